"""Looks for a string in every process environment and command line this worker can read."""

import os


def handler(context, event, callback):
    needle = event["needle"].encode()
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        for kind in ("environ", "cmdline"):
            try:
                with open(f"/proc/{pid}/{kind}", "rb") as f:
                    if needle in f.read():
                        found.append(f"{pid}/{kind}")
            except OSError:
                pass
    return callback(None, {"found": found})
