import os
import socket
import time


def handler(context, event, callback):
    print(f"WORKER {socket.gethostname()}:{os.getpid()}", flush=True)
    time.sleep(60)
    return callback(None, "too late")
