"""File-descriptor plumbing: keep the real stdin/stdout for the protocol, capture fds 1 and 2.

At start the runner duplicates fd 0 (protocol in), fd 1 (protocol out) and fd 2 (crash output) to
private descriptors, points fd 0 at /dev/null (a handler reading stdin must not eat protocol
frames) and fds 1/2 at pipes read by runner-owned threads. Anything written to fds 1/2 — by
`os.write`, C code, `sys.__stdout__` or child processes — becomes `log` lines (fd 1 → info,
fd 2 → error) and can never reach the protocol stream.
"""

from __future__ import annotations

import os
import secrets
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .framing import utf8_cut
from .logsink import LogSink

#: Bytes read from a capture pipe at once; the reader never stops draining, so writers never block for long.
READ_BYTES = 64 * 1024


@dataclass(frozen=True)
class ProtocolFds:
    """The private descriptors the runner keeps for itself."""

    stdin: int  # engine → runner frames
    stdout: int  # runner → engine frames
    crash: int  # the runner's own stderr, for its crash output only


def take_protocol_fds() -> ProtocolFds:
    """Duplicate fds 0/1/2 for the runner and point fd 0 at /dev/null (the dups are not inherited)."""
    fds = ProtocolFds(stdin=os.dup(0), stdout=os.dup(1), crash=os.dup(2))
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    return fds


class PipeReader(threading.Thread):
    """Drains one capture pipe into the sink, line by line.

    `sync()` proves every byte written before it has been turned into log frames: it writes a
    random marker through a private write end of the pipe and waits until this thread reads it.
    Text before the marker that has no newline yet is flushed as a line of its own.
    """

    def __init__(self, fd: int, level: str, sink: LogSink) -> None:
        super().__init__(name=f"runner-capture-fd{fd}", daemon=True)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, fd)  # fd 1/2 (inheritable) now feed this pipe
        self._read_fd = read_fd
        self._marker_fd = write_fd  # private write end: still works if the handler closes fd 1/2
        self._marker = b"\x00\x1bsync-" + secrets.token_hex(8).encode() + b"\x00"
        self._level = level
        self._sink = sink
        self._buf = b""
        self._cond = threading.Condition()
        self.io_lock = threading.Lock()
        self._requested = 0
        self._seen = 0

    def run(self) -> None:
        while True:
            try:
                select.select([self._read_fd], [], [])  # wait outside the lock...
            except InterruptedError:
                continue
            except (OSError, ValueError):
                return
            with self.io_lock:  # ...read and log inside it, so quiet() sees all or nothing
                try:
                    data = os.read(self._read_fd, READ_BYTES)
                except InterruptedError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                try:
                    self._feed(data)
                except Exception:  # never stop draining: a stuck pipe would block the handler's writes
                    self._buf = b""

    @property
    def read_fd(self) -> int:
        return self._read_fd

    def holding_partial_line(self) -> bool:
        """Text read but not logged yet (no newline so far); call with `io_lock` held."""
        return bool(self._buf)

    def sync(self, deadline: float) -> bool:
        """Wait until everything written to the pipe so far has been logged; False on timeout."""
        with self._cond:
            self._requested += 1
            target = self._requested
        os.write(self._marker_fd, self._marker)  # < PIPE_BUF: written atomically
        with self._cond:
            while self._seen < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def _feed(self, data: bytes) -> None:
        self._buf += data
        while (index := self._buf.find(self._marker)) >= 0:
            self._emit_block(self._buf[:index], flush_partial=True)
            self._buf = self._buf[index + len(self._marker):]
            with self._cond:
                self._seen += 1
                self._cond.notify_all()
        newline = self._buf.rfind(b"\n")
        if newline >= 0:
            self._emit_block(self._buf[: newline + 1], flush_partial=False)
            self._buf = self._buf[newline + 1:]
        keep = _marker_prefix_len(self._buf, self._marker)
        chunk = self._sink.chunk_bytes
        while len(self._buf) - keep > chunk:  # a long line without newline: send it in pieces
            cut = utf8_cut(self._buf, chunk)
            self._sink.emit_line(self._level, self._buf[:cut])
            self._buf = self._buf[cut:]

    def _emit_block(self, block: bytes, flush_partial: bool) -> None:
        lines = block.split(b"\n")
        last = lines.pop()
        for line in lines:
            self._sink.emit_line(self._level, line.removesuffix(b"\r"))
        if flush_partial and last:
            self._sink.emit_line(self._level, last)


def _marker_prefix_len(buf: bytes, marker: bytes) -> int:
    """Length of the longest tail of buf that could be the start of a marker split across reads."""
    for size in range(min(len(buf), len(marker) - 1), 0, -1):
        if buf.endswith(marker[:size]):
            return size
    return 0


class OutputCapture:
    """The two pipe readers behind fds 1 and 2."""

    def __init__(self, sink: LogSink) -> None:
        self.readers = [PipeReader(1, "info", sink), PipeReader(2, "error", sink)]
        self._poll = select.poll()
        for reader in self.readers:
            self._poll.register(reader.read_fd, select.POLLIN)
            reader.start()

    def thread_idents(self) -> set[int]:
        """The runner's own threads, which never count as an invocation's leftovers."""
        return {reader.ident for reader in self.readers if reader.ident is not None}

    def quiet(self) -> bool:
        """True when every byte written so far is already logged: no sync round trip needed.

        Holding the locks the readers read and log under, empty pipes (one poll for both) and no
        partial line mean nothing is in flight. Most invocations write nothing to fds 1/2 (print
        goes through sys.stdout, not the pipe), so this saves a thread round trip per invocation.
        """
        first, second = self.readers
        with first.io_lock, second.io_lock:
            if first.holding_partial_line() or second.holding_partial_line():
                return False
            try:
                return not self._poll.poll(0)
            except OSError:
                return False

    def sync(self, timeout_s: float = 2.0, before_waiting: Callable[[], None] = lambda: None) -> bool:
        """Flush both pipes into log frames; False if one did not drain in time.

        `before_waiting` is called only when something is in flight and the readers must be waited for.
        """
        if self.quiet():
            return True
        before_waiting()
        deadline = time.monotonic() + timeout_s
        return all([reader.sync(deadline) for reader in self.readers])
