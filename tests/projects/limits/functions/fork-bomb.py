"""A fork bomb: every child forks again, forever. The parent answers with what happened to it.

The parent keeps forking for `seconds` (so the bomb is live while the tests probe the engine),
counting what succeeded and the first error, then answers. Its children are still alive, so the
runner reports the worker dirty and the engine removes the container.
"""

import errno
import os
import socket
import time


def _bomb():
    try:
        while True:
            try:
                os.fork()
            except OSError:
                time.sleep(0.01)
    finally:
        os._exit(0)


def handler(context, event, callback):
    print(f"CONTAINER {socket.gethostname()}", flush=True)
    deadline = time.monotonic() + float(event.get("seconds", "3"))
    forked, failed, first_error = 0, 0, None
    while time.monotonic() < deadline:
        try:
            pid = os.fork()
        except OSError as exc:
            failed += 1
            first_error = first_error or errno.errorcode.get(exc.errno, str(exc))
            time.sleep(0.01)
            continue
        if pid == 0:
            _bomb()
        forked += 1
    return callback(None, {"forked": forked, "failed": failed, "fork_error": first_error})
