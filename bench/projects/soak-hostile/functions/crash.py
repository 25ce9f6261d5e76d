# Soak: the worker process ends in the middle of the invocation.
import os


def handler(context, event, callback):
    os._exit(3)
