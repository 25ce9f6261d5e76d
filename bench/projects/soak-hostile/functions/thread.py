# Soak: leaves a thread running after the callback.
import threading
import time


def handler(context, event, callback):
    threading.Thread(target=time.sleep, args=(30,)).start()
    return callback(None, "thread started")
