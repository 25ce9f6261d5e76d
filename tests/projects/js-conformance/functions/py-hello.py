"""A Python function next to the JS ones: the project gets a python pool and a node pool."""
import sys


def handler(context, event, callback):
    return callback(None, {"runtime": "python", "version": sys.version.split()[0]})
