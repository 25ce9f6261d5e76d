import os
import socket

WORKER = f"{socket.gethostname()}:{os.getpid()}"
COUNT = 0


def handler(context, event, callback):
    """State left in the worker's memory: how many invocations this worker has served."""
    global COUNT
    COUNT += 1
    return callback(None, {"worker": WORKER, "count": COUNT})
