"""Python-level output: `sys.stdout`, `sys.stderr`, the `logging` module and `warnings` → log lines."""

from __future__ import annotations

import codecs
import io
import logging
import sys
import threading
import warnings
from typing import Any, TextIO

from .logsink import LogSink

#: logging level → protocol level (anything between rounds down to the nearest named level).
_LOGGING_LEVELS = ((logging.ERROR, "error"), (logging.WARNING, "warn"), (logging.INFO, "info"))


class LogStream(io.TextIOBase):
    """A text stream that sends each complete line to the sink at a fixed level.

    Partial lines wait for their newline (print() writes text and newline separately); the runner
    flushes leftovers at the end of each invocation with `finish()`. `fileno()` is the captured fd,
    so code that writes to `sys.stdout.fileno()` is captured too.
    """

    def __init__(self, sink: LogSink, level: str, fd: int) -> None:
        super().__init__()
        self._sink = sink
        self._level = level
        self._fd = fd
        self._lock = threading.RLock()
        self._partial = ""
        self.buffer = _BinaryLogStream(self)

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    @property
    def errors(self) -> str:  # type: ignore[override]
        return "replace"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fd

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        with self._lock:
            pending = self._partial + text
            newline = pending.rfind("\n")
            if newline < 0:
                self._partial = pending
                if len(pending) > self._sink.chunk_bytes:  # no newline coming soon: do not hoard it
                    self._partial = ""
                    self._sink.emit(self._level, pending)
                return len(text)
            self._partial = pending[newline + 1:]
            self._sink.emit(self._level, pending[:newline])
        return len(text)

    def flush(self) -> None:
        """Lines are sent as they complete; a partial line waits for its newline or `finish()`."""

    def reconfigure(self, **_options: Any) -> None:
        """Accepted and ignored: the capture is always UTF-8 and line-based (libraries call this at import)."""

    def finish(self) -> None:
        """Send a pending partial line (end of an invocation or of bootstrap)."""
        with self._lock:
            pending, self._partial = self._partial, ""
            if pending:
                self._sink.emit(self._level, pending)


class _BinaryLogStream(io.RawIOBase):
    """`sys.stdout.buffer`: bytes decoded incrementally (a split UTF-8 sequence is kept for the next write)."""

    def __init__(self, text: LogStream) -> None:
        super().__init__()
        self._text = text
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._text.fileno()

    def write(self, data: Any) -> int:
        raw = bytes(data)
        self._text.write(self._decoder.decode(raw))
        return len(raw)


class SinkLogHandler(logging.Handler):
    """A `logging` handler that maps record levels onto protocol levels."""

    def __init__(self, sink: LogSink) -> None:
        super().__init__(level=logging.DEBUG)
        self._sink = sink
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = next((name for number, name in _LOGGING_LEVELS if record.levelno >= number), "debug")
            self._sink.emit(level, self.format(record))
        except Exception:
            self.handleError(record)


class PythonStreams:
    """Installs and flushes the Python-level capture."""

    def __init__(self, sink: LogSink) -> None:
        self.stdout = LogStream(sink, "info", 1)
        self.stderr = LogStream(sink, "error", 2)
        sys.stdout = self.stdout
        sys.stderr = self.stderr
        for original in (sys.__stdout__, sys.__stderr__):  # they write to fds 1/2, i.e. the capture pipes
            if original is not None and hasattr(original, "reconfigure"):
                original.reconfigure(line_buffering=True)
        root = logging.getLogger()
        root.handlers = [SinkLogHandler(sink)]
        root.setLevel(logging.DEBUG)
        for chatty in ("twilio.http_client", "urllib3"):  # request dumps on every REST call
            logging.getLogger(chatty).setLevel(logging.WARNING)
        logging.getLogger("asyncio").setLevel(logging.INFO)  # "Using selector" on every async invocation
        warnings.showwarning = _warning_to_sink(sink)

    def restore(self) -> None:
        """Undo a handler's `sys.stdout = ...` (or a redirect it never undid) before the next invocation."""
        sys.stdout = self.stdout
        sys.stderr = self.stderr

    def flush(self) -> None:
        """Push every pending byte of Python-level output towards the sink."""
        for stream in (self.stdout, self.stderr):
            stream.finish()
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                if stream is not None:
                    stream.flush()
            except Exception:  # a handler may have closed or replaced them
                pass


def _warning_to_sink(sink: LogSink) -> Any:
    def showwarning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    file: TextIO | None = None, line: str | None = None) -> None:
        sink.emit("warn", warnings.formatwarning(message, category, filename, lineno, line).rstrip("\n"))

    return showwarning
