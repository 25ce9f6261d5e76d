"""The protocol stream to the engine: the real stdout, written one whole frame at a time."""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

from .framing import encode_frame


class Channel:
    """Writes frames to the protocol fd; safe from any thread, and from re-entrant calls.

    A frame is never interleaved with another: writes hold a lock, and a frame produced while the
    same thread is mid-write (a finalizer or signal handler that logs) is queued until the current
    frame is complete.
    """

    def __init__(self, fd: int, max_frame_bytes: int, on_broken: Callable[[OSError], None] | None = None) -> None:
        self._fd = fd
        self.max_frame_bytes = max_frame_bytes
        self._lock = threading.RLock()
        self._writing = False
        self._pending: list[bytes] = []
        self._held: list[bytes] | None = None
        self._on_broken = on_broken or _exit_on_broken

    def hold(self) -> None:
        """Queue frames instead of writing them, until `release()` writes them all at once."""
        with self._lock:
            if self._held is None:
                self._held = []

    def release(self) -> None:
        """Write the held frames in one write (a no-op when nothing is held)."""
        with self._lock:
            held, self._held = self._held, None
            if held:
                self.send_bytes(b"".join(held))

    def send(self, message: dict[str, Any]) -> None:
        """Encode and write one message; raises FrameTooLarge without writing anything."""
        self.send_bytes(encode_frame(message, self.max_frame_bytes))

    def send_bytes(self, data: bytes) -> None:
        """Write one already-encoded frame (or several whole frames)."""
        with self._lock:
            if self._held is not None:
                self._held.append(data)
                return
            if self._writing:
                self._pending.append(data)
                return
            self._writing = True
            try:
                self._write_all(data)
                while self._pending:
                    self._write_all(self._pending.pop(0))
            finally:
                self._writing = False

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._fd, view)
            except InterruptedError:
                continue
            except OSError as exc:
                self._on_broken(exc)
                return
            view = view[written:]


def _exit_on_broken(exc: OSError) -> None:
    """The engine closed our stdout: nobody can hear us any more, so stop at once."""
    os._exit(1)
