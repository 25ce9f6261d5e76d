import os
import socket


def handler(context, event, callback):
    print(f"WORKER {socket.gethostname()}:{os.getpid()}", flush=True)
    while True:
        pass
