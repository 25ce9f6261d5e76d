"""Touches far more memory than the worker's limit, 16 MiB every 50 ms (so it lasts a moment)."""

import socket
import time


def handler(context, event, callback):
    print(f"CONTAINER {socket.gethostname()}", flush=True)
    blocks = []
    for _ in range(int(event.get("mib", "2048")) // 16):
        blocks.append(b"\x01" * (16 * 1024 * 1024))
        time.sleep(0.05)
    return callback(None, f"allocated {len(blocks) * 16} MiB")
