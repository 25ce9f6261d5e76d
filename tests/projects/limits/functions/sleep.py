"""Names its container in a log line, then sleeps `seconds` (default 60) before answering."""

import socket
import time


def handler(context, event, callback):
    print(f"CONTAINER {socket.gethostname()}", flush=True)
    time.sleep(float(event.get("seconds", "60")))
    return callback(None, "slept")
