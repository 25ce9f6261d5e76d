"""Starts a `sleep 300` that tries to outlive its worker; argv[0] carries the test's marker.

`mode=double-fork`: fork, `setsid`, fork again and let the middle process exit, so the sleep has
left both the worker's process tree and its session; then call back at once.
`mode=setsid-child`: one fork and `setsid` (a child of the runner in a session of its own), then
stay in the invocation for `hold` seconds, so the sleep is alive when the engine is stopped.
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


def handler(context, event, callback):
    double = event.get("mode", "double-fork") == "double-fork"
    pid = start_sleep(event["marker"], double)
    time.sleep(float(event.get("hold", "0")))
    return callback(None, {"started": pid})
