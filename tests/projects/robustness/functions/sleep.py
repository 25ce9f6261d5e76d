import os
import socket
import time

WORKER = f"{socket.gethostname()}:{os.getpid()}"


def handler(context, event, callback):
    time.sleep(float(event.get("s", "0.2")))
    return callback(None, {"worker": WORKER, "i": event.get("i")})
