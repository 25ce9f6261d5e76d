"""The soak's traffic (bench/soak.py): a well-behaved service and hostile handlers and clients on a loop.

Everything goes to 127.0.0.1 only, at bounded rates: the well-behaved service at `OK_RATE_PER_S`,
one hostile request every `1 / HOSTILE_RATE_PER_S` s taking the kinds in turn, and at most
`SLOWLORIS_MAX` slow connections open at once. The service is picked by the Host header
(`<service>.localhost`), so nothing resolves a name. Outcomes are counted per kind; a hostile
kind may fail in any way (its fixes land elsewhere), the well-behaved service may not.
"""

from __future__ import annotations

import asyncio
import collections
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from bench.plan import SMS_WEBHOOK_FORM

OK_SERVICE = "soak-ok"
HOSTILE_SERVICE = "soak-hostile"
OK_RATE_PER_S = 20.0
HOSTILE_RATE_PER_S = 2.0
REQUEST_TIMEOUT_S = 30.0  # above acquire_timeout_s (10 s) plus the longest handler here
OK_PATH = "/work?ms=5"
OK_EXPECT = "<Message>Thanks +15551234567, we got: Hello from the bench</Message>"
OK_BODY = urlencode(SMS_WEBHOOK_FORM)
HUGE_HEADERS = 120  # × 8 KiB: far over max_headers / max_header_bytes
SLOWLORIS_MAX = 6
SLOWLORIS_HOLD_S = 30.0  # a slow connection the engine has not closed by then is closed by us
SLOWLORIS_BYTE_EVERY_S = 1.0

#: Hostile kinds, in the order they are sent: a function path, or a client misbehaving.
HANDLER_KINDS = ("alarm", "itimer", "grandchild", "thread", "crash", "membomb", "spin", "js-worker", "js-bgchild",
                 "cookie")
CLIENT_KINDS = ("huge-header", "slowloris")
KINDS = HANDLER_KINDS[:5] + CLIENT_KINDS[:1] + HANDLER_KINDS[5:] + CLIENT_KINDS[1:]


@dataclass
class Tally:
    """Outcomes so far: per kind, by status (or a client-side outcome such as `closed after 10 s`)."""

    ok_sent: int = 0
    ok_errors: int = 0
    ok_error_detail: collections.Counter[str] = field(default_factory=collections.Counter)
    ok_latency_ms: list[float] = field(default_factory=list)
    hostile: dict[str, collections.Counter[str]] = field(
        default_factory=lambda: {k: collections.Counter() for k in KINDS})
    tossed_cookies: int = 0  # replies whose Set-Cookie still names a Domain that is not the service's host

    def hostile_summary(self) -> dict[str, dict[str, int]]:
        return {k: dict(sorted(c.items())) for k, c in self.hostile.items()}


def host(service: str, port: int) -> str:
    return f"{service}.localhost:{port}"


async def _ok_request(session, base_url: str, port: int, tally: Tally) -> None:
    import aiohttp

    started = time.monotonic()
    tally.ok_sent += 1
    headers = {"Host": host(OK_SERVICE, port), "Content-Type": "application/x-www-form-urlencoded"}
    try:
        async with session.post(base_url + OK_PATH, data=OK_BODY, headers=headers) as response:
            text = await response.text()
            status = response.status
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        tally.ok_errors += 1
        tally.ok_error_detail[type(exc).__name__] += 1
        return
    if status != 200 or OK_EXPECT not in text:
        tally.ok_errors += 1
        tally.ok_error_detail[str(status)] += 1
        return
    tally.ok_latency_ms.append((time.monotonic() - started) * 1000)


async def _handler_request(session, base_url: str, port: int, kind: str, token: str, tally: Tally) -> None:
    import aiohttp

    try:
        async with session.get(base_url + "/" + kind, params={"token": token},
                               headers={"Host": host(HOSTILE_SERVICE, port)}) as response:
            await response.read()
            outcome = str(response.status)
            if kind == "cookie":
                cookies = response.headers.getall("Set-Cookie", [])
                if any("domain=.localhost" in c.lower().replace(" ", "") for c in cookies):
                    tally.tossed_cookies += 1
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        outcome = type(exc).__name__
    tally.hostile[kind][outcome] += 1


async def _read_status(reader: asyncio.StreamReader, timeout_s: float) -> str:
    line = await asyncio.wait_for(reader.readline(), timeout_s)
    parts = line.split()
    return parts[1].decode() if len(parts) >= 2 else "closed"


async def _huge_header(port: int, tally: Tally) -> None:
    """One request with HUGE_HEADERS headers of 8 KiB: the engine must refuse it, not buffer it."""
    outcome = "closed"
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET /cookie HTTP/1.1\r\nHost: {host(HOSTILE_SERVICE, port)}\r\n".encode())
            pad = b"a" * 8192
            for i in range(HUGE_HEADERS):
                writer.write(b"X-Pad-%d: %s\r\n" % (i, pad))
                await writer.drain()
            writer.write(b"\r\n")
            await writer.drain()
            outcome = await _read_status(reader, REQUEST_TIMEOUT_S)
        finally:
            writer.close()
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
        outcome = outcome if outcome != "closed" else type(exc).__name__
    tally.hostile["huge-header"][outcome] += 1


async def _slowloris(port: int, tally: Tally) -> None:
    """Headers one byte a second: counted by when (if ever) the engine closes the connection."""
    started = time.monotonic()
    outcome = f"held {SLOWLORIS_HOLD_S:g} s"
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET /cookie HTTP/1.1\r\nHost: {host(HOSTILE_SERVICE, port)}\r\nX-Slow: ".encode())
            await writer.drain()
            while time.monotonic() - started < SLOWLORIS_HOLD_S:
                try:
                    data = await asyncio.wait_for(reader.read(1024), SLOWLORIS_BYTE_EVERY_S)
                except asyncio.TimeoutError:
                    writer.write(b"a")
                    await writer.drain()
                    continue
                status = data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "closed"
                outcome = f"{status} within {_bucket(time.monotonic() - started)}"
                break
        finally:
            writer.close()
    except OSError as exc:
        outcome = f"{type(exc).__name__} within {_bucket(time.monotonic() - started)}"
    tally.hostile["slowloris"][outcome] += 1


def _bucket(seconds: float) -> str:
    for limit in (1, 5, 10, 20, 30):
        if seconds <= limit:
            return f"{limit} s"
    return "> 30 s"


async def drive(base_url: str, duration_s: float, token: str, tally: Tally) -> None:
    """Send both streams for `duration_s` (127.0.0.1 only), then wait for every reply."""
    import aiohttp

    if urlsplit(base_url).hostname != "127.0.0.1":
        raise ValueError(f"the soak only goes to 127.0.0.1, not {base_url!r}")
    port = urlsplit(base_url).port or 80
    loop = asyncio.get_running_loop()
    slow = asyncio.Semaphore(SLOWLORIS_MAX)
    tasks: set[asyncio.Task[None]] = set()

    def spawn(coro) -> None:
        task = asyncio.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def slowloris() -> None:
        if slow.locked():
            tally.hostile["slowloris"]["skipped (cap)"] += 1
            return
        async with slow:
            await _slowloris(port, tally)

    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    # Fresh connections for hostile requests: a worker killed mid-reply must not spoil a pooled one.
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as ok_session, \
            aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(force_close=True)) as bad_session:
        start = loop.time()
        ok_next, bad_next, index = start, start, 0
        while (now := loop.time()) - start < duration_s:
            if now >= ok_next:
                spawn(_ok_request(ok_session, base_url, port, tally))
                ok_next += 1 / OK_RATE_PER_S
            if now >= bad_next:
                kind = KINDS[index % len(KINDS)]
                index += 1
                if kind == "huge-header":
                    spawn(_huge_header(port, tally))
                elif kind == "slowloris":
                    spawn(slowloris())
                else:
                    spawn(_handler_request(bad_session, base_url, port, kind, token, tally))
                bad_next += 1 / HOSTILE_RATE_PER_S
            await asyncio.sleep(max(0.0, min(ok_next, bad_next) - loop.time()))
        if tasks:
            await asyncio.wait(set(tasks), timeout=SLOWLORIS_HOLD_S + REQUEST_TIMEOUT_S)
