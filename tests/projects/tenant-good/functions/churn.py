import os
import socket
import threading
import time

WORKER = f"{socket.gethostname()}:{os.getpid()}"


def handler(context, event, callback):
    """Leaves a thread running, so its worker is not clean: every call needs a new worker."""
    threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
    return callback(None, {"worker": WORKER})
