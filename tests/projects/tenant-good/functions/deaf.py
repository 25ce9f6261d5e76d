import gc
import os
import socket

WORKER = f"{socket.gethostname()}:{os.getpid()}"
_KEPT = []


def handler(context, event, callback):
    """Patches the runner so it stops reading the engine's frames, then answers normally.

    The runner's protocol input is swapped for a pipe nobody writes to (its write end kept open,
    so the runner blocks instead of seeing end of file). Nothing is left running, so the worker
    looks clean; the next frame the engine sends is never read.
    """
    plumbing = next(o for o in gc.get_objects() if type(o).__name__ == "Plumbing")
    read_end, write_end = os.pipe()
    os.dup2(read_end, plumbing.stdin.fileno())
    _KEPT.append(write_end)
    return callback(None, {"worker": WORKER})
