"""The worker channel of the docker backend: the attach socket of a container, as lines.

Without a TTY Docker multiplexes a container's stdout and stderr on the attach socket in frames
with an 8-byte header, which `StreamDemux` splits; stdout feeds a `LineSplitter` that enforces
`max_frame_bytes`, stderr a bounded `StderrTail`. These three are pure and tested on their own.
`AttachProtocol` drives them from asyncio as data arrives, with backpressure, and `AttachedStream`
is what a worker reads and writes. Nothing here knows about containers' lifecycle (create, kill,
remove): that is `docker.py`'s, and this module does not import `docker`.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from typing import Any

from engine.errors import BackendError, ChannelClosed, FrameTooLarge

STDERR_TAIL_BYTES = 8 * 1024  # runner crash output kept per worker for logs

# The bound on stdout lines queued but not yet read: beyond it the socket is no longer read
# (backpressure), so a worker writing while nobody listens cannot grow the engine's memory.
_PENDING_SLACK_BYTES = 64 * 1024


# --- framing: pure, no I/O ---------------------------------------------------------------------

STDOUT = 1
STDERR = 2
_HEADER_BYTES = 8


class StreamDemux:
    """Splits Docker's multiplexed attach stream into (stream id, payload) pieces.

    Each frame is an 8-byte header (stream id, three zero bytes, big-endian payload length) and
    the payload. Chunks may cut anywhere, headers included; payloads are handed on as they arrive,
    so a large frame is never buffered whole.
    """

    __slots__ = ("_header", "_stream", "_remaining")

    def __init__(self) -> None:
        self._header = bytearray()
        self._stream = STDOUT
        self._remaining = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        pos, size = 0, len(data)
        while pos < size:
            if self._remaining:
                take = min(self._remaining, size - pos)
                out.append((self._stream, data[pos : pos + take]))
                self._remaining -= take
                pos += take
                continue
            need = _HEADER_BYTES - len(self._header)
            if not self._header and size - pos >= _HEADER_BYTES:
                header = data[pos : pos + _HEADER_BYTES]
                pos += _HEADER_BYTES
            else:
                self._header += data[pos : pos + need]
                pos += min(need, size - pos)
                if len(self._header) < _HEADER_BYTES:
                    break
                header = bytes(self._header)
                self._header.clear()
            self._stream = header[0]
            self._remaining = int.from_bytes(header[4:8], "big")
        return out


class LineSplitter:
    """Turns stdout bytes into lines (without the newline), refusing any line over `max_frame_bytes`."""

    __slots__ = ("max_frame_bytes", "lines", "pending_bytes", "_partial")

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.lines: collections.deque[bytes] = collections.deque()
        self.pending_bytes = 0  # bytes in `lines`, for backpressure
        self._partial = bytearray()

    def feed(self, data: bytes) -> None:
        start = 0
        limit = self.max_frame_bytes
        while True:
            newline = data.find(b"\n", start)
            if newline < 0:
                break
            if self._partial:
                self._partial += data[start:newline]
                line = bytes(self._partial)
                self._partial.clear()
            else:
                line = data[start:newline]
            if len(line) > limit:
                raise FrameTooLarge(f"the worker sent a line of {len(line)} bytes; the limit is {limit} (max_frame_bytes)")
            self.lines.append(line)
            self.pending_bytes += len(line)
            start = newline + 1
        if len(self._partial) + len(data) - start > limit:
            raise FrameTooLarge(f"the worker sent more than {limit} bytes without a newline (max_frame_bytes)")
        if start < len(data):
            self._partial += data[start:]

    def pop(self) -> bytes:
        line = self.lines.popleft()
        self.pending_bytes -= len(line)
        return line

    @property
    def partial_bytes(self) -> int:
        return len(self._partial)


class StderrTail:
    """Keeps the last `max_bytes` of a stream; older bytes are dropped."""

    __slots__ = ("max_bytes", "_buf")

    def __init__(self, max_bytes: int = STDERR_TAIL_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) > 2 * self.max_bytes:  # trim in batches, not on every write
            del self._buf[: -self.max_bytes]

    def text(self) -> str:
        return bytes(self._buf[-self.max_bytes :]).decode("utf-8", errors="replace")


# --- the attach socket, driven by asyncio -----------------------------------------------------


class AttachProtocol(asyncio.Protocol):
    """Reads the attach socket as data arrives: stdout lines queue up (bounded), stderr is drained."""

    def __init__(self, max_frame_bytes: int) -> None:
        self.demux = StreamDemux()
        self.stdout = LineSplitter(max_frame_bytes)
        self.stderr = StderrTail()
        self.transport: asyncio.Transport | None = None
        self.error: Exception | None = None  # a framing error, raised by the next read_line
        self.closed = False
        self._max_pending = max_frame_bytes + _PENDING_SLACK_BYTES
        self._reading_paused = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.error is not None:
            return
        try:
            for stream, payload in self.demux.feed(data):
                if stream == STDOUT:
                    self.stdout.feed(payload)
                else:
                    self.stderr.feed(payload)
        except FrameTooLarge as exc:
            self.error = exc
            self._pause_reading()
        if self.stdout.pending_bytes > self._max_pending:
            self._pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake_reader()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake_reader()
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    async def drain(self) -> None:
        if self._write_paused and not self.closed:
            waiter = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(waiter)
            await waiter

    async def wait_readable(self) -> None:
        if self._reading_paused and self.error is None and self.stdout.pending_bytes <= self._max_pending:
            self._reading_paused = False
            if self.transport is not None and not self.closed:
                self.transport.resume_reading()
        waiter = asyncio.get_running_loop().create_future()
        self._read_waiter = waiter
        try:
            await waiter
        finally:
            self._read_waiter = None

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class AttachedStream:
    """One worker's stdin (write frames) and stdout (read lines) over its attach socket."""

    def __init__(self, worker_id: str, protocol: AttachProtocol) -> None:
        self.worker_id = worker_id
        self._protocol = protocol

    async def send(self, data: bytes) -> None:
        protocol = self._protocol
        if protocol.closed or protocol.transport is None or protocol.transport.is_closing():
            raise ChannelClosed(f"worker {self.worker_id}: its stdin is closed")
        protocol.transport.write(data)
        await protocol.drain()

    async def read_line(self) -> bytes:
        protocol = self._protocol
        stdout = protocol.stdout
        while not stdout.lines:
            if protocol.error is not None:
                raise protocol.error
            if protocol.closed:
                raise ChannelClosed(f"worker {self.worker_id}: its stdout ended")
            await protocol.wait_readable()
        return stdout.pop()

    def stderr_tail(self) -> str:
        return self._protocol.stderr.text()

    def close(self) -> None:
        """Close the socket (the reader then sees the end of stdout); idempotent."""
        if self._protocol.transport is not None:
            self._protocol.transport.close()


async def open_stream(worker_id: str, sock: socket.socket, max_frame_bytes: int) -> AttachedStream:
    """Hand an attach socket (from `detach_socket`) to the event loop; the caller closes `sock` on failure."""
    protocol = AttachProtocol(max_frame_bytes)
    await asyncio.get_running_loop().create_connection(lambda: protocol, sock=sock)
    return AttachedStream(worker_id, protocol)


def detach_socket(raw: Any) -> socket.socket:
    """Take the attach connection's socket away from docker-py, as a plain socket asyncio can own.

    docker-py 7 returns a `socket.SocketIO` for unix and plain tcp daemons (its `_sock` is the
    socket). The fd is duplicated and docker-py's side closed, so asyncio alone owns the
    connection and closing it really closes it. Attaching before start means nothing was read
    into docker-py's buffers past the HTTP upgrade.
    """
    sock = getattr(raw, "_sock", raw)
    if not isinstance(sock, socket.socket):
        raise BackendError(f"unexpected attach socket type {type(raw).__name__} from the docker SDK")
    owned = sock.dup()
    response = getattr(raw, "_response", None)
    for close in (response.close if response is not None else None, raw.close, sock.close):
        if close is not None:
            try:
                close()
            except (OSError, ValueError):  # already closed by the one before
                pass
    owned.setblocking(False)
    return owned
