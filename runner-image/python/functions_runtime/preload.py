"""Modules that are imported while the worker is idle instead of during bootstrap.

`twilio.rest` (with requests and urllib3) and asyncio are about two thirds of the runner's start-up
time, and most invocations need neither. A worker imports them when nothing is waiting on stdin,
so a cold start answers its first request without paying for them and a pre-warmed worker has
them loaded before its first request; code that needs one earlier simply imports it then.
"""

from __future__ import annotations

import importlib
import select

MODULES = ("twilio.rest", "functions_runtime.aio")

#: How long the runner waits for a next message before it spends idle time on imports.
IDLE_S = 0.05


class Preloader:
    """Imports `MODULES` once, at the first moment stdin stays quiet for `IDLE_S`."""

    def __init__(self, stdin_fd: int) -> None:
        self._fd = stdin_fd
        self.pending = True

    def maybe_run(self) -> None:
        """Called between messages; returns at once after the imports are done."""
        if not self.pending:
            return
        try:
            readable, _, _ = select.select([self._fd], [], [], IDLE_S)
        except (OSError, ValueError):
            readable = []
        if readable:  # a message is waiting: serve it first, try again after it
            return
        self.pending = False
        for name in MODULES:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001  (the code that needs it reports the error when it imports it)
                pass
