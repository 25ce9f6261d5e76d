import os
import socket

WORKER = f"{socket.gethostname()}:{os.getpid()}"


def handler(context, event, callback):
    """A healthy function: answers at once and says which worker served it."""
    return callback(None, {"worker": WORKER})
