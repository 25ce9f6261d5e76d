"""Starts a `sleep 300` that tries to outlive its worker; argv[0] carries the test's marker.

`mode=double-fork`: fork, `setsid`, fork again and let the middle process exit, so the sleep has
left both the worker's process tree and its session; then call back at once.
`mode=setsid-child`: one fork and `setsid` (a child of the runner in a session of its own), then
stay in the invocation for `hold` seconds, so the sleep is alive when the engine is stopped.
`mode=crash-late-write`: double-fork a copy of the runner (no exec, so it keeps every descriptor
the runner has, its stdout included) that writes `path` a second later, then end the runner (exit 1).
"""

import os
import shutil
import time


def start_sleep(marker, double):
    sleep = shutil.which("sleep") or "/bin/sleep"
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            if not double or os.fork() == 0:
                os.execv(sleep, [f"leftover-{marker}", "300"])
        finally:
            os._exit(0)
    if double:
        os.waitpid(pid, 0)
    return pid


def start_late_write(path):
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                time.sleep(1)
                with open(path, "w") as handle:
                    handle.write("x")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def handler(context, event, callback):
    if event.get("mode") == "crash-late-write":
        start_late_write(event["path"])
        os._exit(1)
    double = event.get("mode", "double-fork") == "double-fork"
    pid = start_sleep(event["marker"], double)
    time.sleep(float(event.get("hold", "0")))
    return callback(None, {"started": pid})
