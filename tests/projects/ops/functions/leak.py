import threading
import time


def handler(context, event, callback):
    """Calls back with a thread still running: the worker cannot prove it is clean (dirty)."""
    threading.Thread(target=time.sleep, args=(float(event.get("s", "3")),), daemon=True).start()
    return callback(None, "leaked a thread")
