"""Leaves signals, timers, grandchildren and threads behind the callback (tests/test_leftovers.py).

Module globals live as long as the worker: `WORKER` tells workers apart, `TICKS` counts runs of a
SIGALRM handler, `MUTATED` collects what late threads wrote. `mode=state` reports them.
"""

import os
import signal
import socket
import subprocess
import threading
import time
import uuid

WORKER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4()}"
TICKS = []
MUTATED = []


def marker_path(tag):
    return f"/tmp/leftover-{tag}"


def state(event):
    tag = event.get("tag", "")
    return {"worker": WORKER, "ticks": len(TICKS), "mutated": list(MUTATED),
            "marker": bool(tag) and os.path.exists(marker_path(tag))}


def handler(context, event, callback):
    mode = event.get("mode")
    tag = event.get("tag", "")
    if mode == "state":
        return callback(None, state(event))
    if mode == "alarm":
        signal.alarm(1)  # default action: the process dies a second later
    elif mode == "itimer":
        signal.signal(signal.SIGALRM, lambda *_: TICKS.append(time.time()))
        signal.setitimer(signal.ITIMER_REAL, 0.3, 0.05)
    elif mode == "ctypes-alarm":
        import ctypes

        ctypes.CDLL(None).alarm(1)  # behind the signal module's back
    elif mode == "grandchild":
        # The shell exits at once; its backgrounded subshell is nobody's child but the runner's.
        subprocess.Popen(f"(sleep 1; echo x > {marker_path(tag)}) &", shell=True).wait()
    elif mode == "daemon":
        pid = os.fork()  # double fork and a new session, as a daemon detaches itself
        if pid == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(1)
                with open(marker_path(tag), "w") as handle:
                    handle.write("x")
            os._exit(0)
        os.waitpid(pid, 0)
    elif mode == "thread-mutate":
        threading.Thread(target=lambda: (time.sleep(0.05), MUTATED.append(tag))).start()
    else:
        return callback(f"unknown mode {mode!r}")
    return callback(None, state(event))
