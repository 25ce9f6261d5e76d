import os
import socket
import time


def handler(context, event, callback):
    """Under the default 10 s limit."""
    print(f"WORKER {socket.gethostname()}:{os.getpid()}", flush=True)
    time.sleep(60)
    return callback(None, "too late")
