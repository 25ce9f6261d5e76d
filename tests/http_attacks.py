"""Hostile HTTP clients over real sockets to 127.0.0.1, for the front door's attack tests.

Every attack here is bounded in connections and time, and targets loopback only. Source
addresses are other loopback addresses (127.0.0.x), so one test can play several clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass
from pathlib import Path


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def open_socket(port: int, source: str = "127.0.0.1", timeout: float = 30) -> socket.socket:
    """A blocking TCP connection to 127.0.0.1:port from the loopback address `source`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


def read_reply(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    """Everything the server sends until it closes (or `limit` bytes); b"" if it closed at once."""
    chunks = []
    total = 0
    try:
        while total < limit:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
            total += len(data)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed this connection (EOF or reset), without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True
    finally:
        sock.setblocking(True)


@dataclass
class SlowHeaders:
    """How one slow client ended: what it sent, what it got back first, and when."""

    sent: int
    reply: bytes
    seconds: float


async def slow_headers(
    port: int,
    *,
    source: str,
    total_bytes: int,
    line_bytes: int,
    interval_s: float,
    hold_s: float,
) -> SlowHeaders:
    """Send a request head one header line every `interval_s`, never finishing it.

    Stops at `total_bytes` or when the server answers or closes, then holds the connection
    open until `hold_s` after the start (so the server must keep or cut it).
    """
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    reply = b""
    sent = 0
    answered = asyncio.ensure_future(reader.read(4096))
    try:
        writer.write(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        i = 0
        while sent < total_bytes and not answered.done():
            name = b"X-Pad-%d: " % i
            line = name + b"a" * max(1, line_bytes - len(name) - 2) + b"\r\n"
            try:
                writer.write(line)
                await writer.drain()
            except (ConnectionError, OSError):
                break
            sent += len(line)
            i += 1
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(answered), interval_s)
        remaining = hold_s - (time.monotonic() - started)
        if remaining > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(answered), remaining)
        if answered.done():
            with contextlib.suppress(ConnectionError, OSError):
                reply = answered.result()
        return SlowHeaders(sent=sent, reply=reply, seconds=time.monotonic() - started)
    finally:
        answered.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, OSError):
            await answered
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def header_flood(
    port: int,
    *,
    sources: list[str],
    per_source: int,
    total_bytes: int,
    line_bytes: int,
    interval_s: float,
    hold_s: float,
) -> list[SlowHeaders | BaseException]:
    """`per_source` slow-header clients from each source address, all at once."""
    tasks = [
        slow_headers(port, source=source, total_bytes=total_bytes, line_bytes=line_bytes,
                     interval_s=interval_s, hold_s=hold_s)
        for source in sources for _ in range(per_source)
    ]
    return await asyncio.gather(*tasks, return_exceptions=True)


def sample_rss_during(pid: int, seconds: float, coro_factory) -> tuple[int, object]:
    """Run the coroutine from `coro_factory()` while sampling the pid's RSS; (peak RSS, result)."""

    async def run() -> tuple[int, object]:
        peak = rss_bytes(pid)
        task = asyncio.ensure_future(coro_factory())
        deadline = time.monotonic() + seconds
        while not task.done() and time.monotonic() < deadline:
            peak = max(peak, rss_bytes(pid))
            await asyncio.sleep(0.1)
        result = await task
        return max(peak, rss_bytes(pid)), result

    return asyncio.run(run())
