import os
import signal
import time


def handler(context, event, callback):
    """Dies mid-invocation: the worker is killed before it calls back."""
    time.sleep(float(event.get("s", "0.2")))
    os.kill(os.getpid(), signal.SIGKILL)
