"""A sync handler leaving a timer behind after the callback."""

import os
import socket
import threading
import uuid

WORKER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4()}"


def fire(tag):
    print(f"LEFTOVER FIRED {tag}", flush=True)


def handler(context, event, callback):
    callback(None, {"worker": WORKER})
    threading.Timer(float(event.get("delay", "0.5")), fire, args=(event.get("tag", ""),)).start()
