"""Turns output text into `log` frames: one line per message, chopped, capped per invocation."""

from __future__ import annotations

import threading
from typing import Any, Callable

from .channel import Channel
from .framing import LOG_CHUNK_BYTES, log_frame, utf8_chunks

LEVELS = ("debug", "info", "warn", "error")


class LogSink:
    """Where every piece of handler output ends up.

    The invocation id, the byte budget and the decision to send are taken under one lock, and
    `end_invocation` sends `done` under the same lock, so no log carrying an invocation's id can
    follow that invocation's `done`. Once a message does not fit the budget, everything after it
    in that invocation is dropped and counted (the log never has holes in the middle).
    """

    def __init__(self, channel: Channel, max_log_bytes: int) -> None:
        self._channel = channel
        self._lock = threading.RLock()
        self._id: Any = None
        self._max_bytes = max_log_bytes
        self._used = 0
        self._dropped = 0
        self._full = False
        self._muted = False
        self.chunk_bytes = LOG_CHUNK_BYTES

    def configure(self, max_log_bytes: int, max_frame_bytes: int) -> None:
        """Apply the limits of `init`; the chunk size keeps worst-case JSON escaping (×6) under the frame cap."""
        with self._lock:
            self._max_bytes = max_log_bytes
            self.chunk_bytes = max(64, min(LOG_CHUNK_BYTES, (max_frame_bytes - 256) // 6))

    def begin(self, invocation_id: Any) -> None:
        """Attribute output to this invocation, with a fresh budget."""
        with self._lock:
            self._id = invocation_id
            self._reset()

    def end_invocation(self, build_done: Callable[[int], dict[str, Any]], mute: bool) -> None:
        """Send `done` (built from the dropped count) and detach; once muted, the sink drops everything
        for good (the engine replaces a dirty worker: nothing may log under a later id meanwhile)."""
        with self._lock:
            self._channel.send(build_done(self._dropped))
            self._id = None
            self._reset()
            self._muted = self._muted or mute

    def _reset(self) -> None:
        self._used = 0
        self._dropped = 0
        self._full = False

    @property
    def dropped(self) -> int:
        """Bytes dropped so far in the current invocation."""
        return self._dropped

    def emit(self, level: str, text: str) -> None:
        """Send text as one message per line (split on '\\n'), each line chopped to chunk_bytes."""
        for line in text.split("\n"):
            if line.endswith("\r"):
                line = line[:-1]
            self._emit_valid(level, line.encode("utf-8", "replace"))

    def emit_line(self, level: str, line: bytes) -> None:
        """Send one line of raw output bytes; invalid UTF-8 is replaced before the budget counts it."""
        self._emit_valid(level, line.decode("utf-8", "replace").encode("utf-8"))

    def _emit_valid(self, level: str, data: bytes) -> None:
        with self._lock:
            for chunk in utf8_chunks(data, self.chunk_bytes):
                self._send(level, chunk)

    def _send(self, level: str, chunk: bytes) -> None:
        if self._muted:
            return
        size = len(chunk)
        if self._full or self._used + size > self._max_bytes:
            self._full = True
            self._dropped += size
            return
        self._used += size
        self._channel.send(log_frame(self._id, level, chunk.decode("utf-8")))
