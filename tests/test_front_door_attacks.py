"""Attacks on the functions listener before a request exists (issue 13, item 3).

Real sockets to 127.0.0.1, from several loopback source addresses (127.0.0.x) so one test can
be several clients. The limits are enforced while reading: a head over `max_header_bytes` or
`max_headers` is refused with 431 after about the limit, not after what the client sends; a head
that trickles in is cut at `header_read_timeout_s`, a body at `body_read_timeout_s` (408); a peer
holds at most `max_connections_per_client` connections and the listener `max_connections`. The
engine's memory (its RSS, from /proc) stays flat under a flood of slow, oversized heads.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.http_attacks import (
    closed_by_server,
    header_flood,
    open_socket,
    read_reply,
    rss_bytes,
    sample_rss_during,
)

PROJECTS = Path(__file__).resolve().parent / "projects"
HTTP = PROJECTS / "http"
HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 2.0
PER_CLIENT = 6
TOTAL = 10


def _start(factory, backend, request, **kwargs):
    if backend != "process":
        request.getfixturevalue("docker_available")
    return factory(HTTP, backend=backend, **kwargs)


@pytest.fixture(scope="module")
def engine(module_engine_factory, backend, request):
    """Small timeouts and connection caps, so each can be crossed in a test's time."""
    return _start(module_engine_factory, backend, request, config={
        "header_read_timeout_s": HEADER_TIMEOUT_S, "body_read_timeout_s": BODY_TIMEOUT_S,
        "max_connections_per_client": PER_CLIENT, "max_connections": TOTAL,
    })


def open_connections(engine) -> int:
    """The engine's `functions_engine_connections` gauge."""
    text = httpx.get(engine.admin_url + "/metrics", timeout=10).text
    match = re.search(r"^functions_engine_connections (\S+)$", text, re.M)
    assert match, "no functions_engine_connections gauge on /metrics"
    return int(float(match.group(1)))


def wait_connections(engine, at_most: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while open_connections(engine) > at_most:
        if time.monotonic() > deadline:
            raise AssertionError(f"the engine still holds {open_connections(engine)} connections, expected <= {at_most}")
        time.sleep(0.1)


def get_echo(engine, source: str = "127.0.0.1") -> int:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=engine.url, transport=transport, timeout=30) as client:
        return client.get("/echo").status_code


def status_of(reply: bytes) -> int | None:
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", reply)
    return int(match.group(1)) if match else None


def send_until_refused(sock: socket.socket, chunks, pause_s: float = 0.01) -> int:
    """Send chunks one by one until the server answers or closes; the bytes sent by then."""
    sent = 0
    for chunk in chunks:
        if closed_by_server(sock) or _has_reply(sock):
            return sent
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            return sent
        sent += len(chunk)
        time.sleep(pause_s)
    return sent


def _has_reply(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return bool(sock.recv(1, socket.MSG_PEEK))
    except (BlockingIOError, ConnectionError):
        return False
    finally:
        sock.setblocking(True)


# --- slow clients ----------------------------------------------------------------------------


def test_slowloris_head_one_byte_a_second_is_cut_after_header_read_timeout(engine):
    sock = open_socket(engine.port, "127.0.0.11")
    started = time.monotonic()
    try:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        cut_after = None
        for _ in range(30):  # at most 30 s of trickling; the limit is HEADER_TIMEOUT_S
            time.sleep(1)
            if closed_by_server(sock):
                cut_after = time.monotonic() - started
                break
            try:
                sock.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                cut_after = time.monotonic() - started
                break
        assert cut_after is not None, "a head trickled at one byte a second was never cut"
        assert HEADER_TIMEOUT_S - 0.5 <= cut_after <= HEADER_TIMEOUT_S + 8, cut_after
    finally:
        sock.close()
    assert get_echo(engine) == 200


def test_connection_that_never_sends_a_head_is_closed_after_header_read_timeout(engine):
    sock = open_socket(engine.port, "127.0.0.12")
    started = time.monotonic()
    try:
        assert read_reply(sock) == b""  # blocks until the engine closes it (socket timeout 30 s)
        assert HEADER_TIMEOUT_S - 0.5 <= time.monotonic() - started <= HEADER_TIMEOUT_S + 8
    finally:
        sock.close()


def test_kept_alive_connection_trickling_its_next_head_is_cut(engine):
    """The head timer restarts with the first byte of each request on a kept-alive connection."""
    sock = open_socket(engine.port, "127.0.0.13")
    try:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = sock.recv(65536)
        assert status_of(first) == 200
        time.sleep(HEADER_TIMEOUT_S + 1)  # idle between requests is keep-alive's, not the head's
        assert not closed_by_server(sock), "an idle kept-alive connection was cut by the head timeout"
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        started = time.monotonic()
        while not closed_by_server(sock):
            assert time.monotonic() - started < HEADER_TIMEOUT_S + 8, "the trickled second head was never cut"
            time.sleep(0.5)
            try:
                sock.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                break
        assert time.monotonic() - started >= HEADER_TIMEOUT_S - 0.5
    finally:
        sock.close()


def test_slow_body_is_answered_408_after_body_read_timeout_and_the_function_does_not_run(engine):
    sock = open_socket(engine.port, "127.0.0.14")
    try:
        sock.sendall(b"POST /echo?token=slowbody HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: text/plain\r\nContent-Length: 100\r\n\r\n0123456789")
        started = time.monotonic()
        reply = read_reply(sock)
        elapsed = time.monotonic() - started
    finally:
        sock.close()
    assert status_of(reply) == 408, reply[:200]
    assert b"body_read_timeout_s" in reply
    assert BODY_TIMEOUT_S - 0.5 <= elapsed <= BODY_TIMEOUT_S + 8
    assert "RAN echo token=slowbody" not in engine.logs()


# --- oversized heads -------------------------------------------------------------------------


def test_2000_headers_are_refused_with_431_after_about_max_headers(engine):
    sock = open_socket(engine.port, "127.0.0.15")
    lines = [b"X-H-%d: v\r\n" % i for i in range(2000)]
    try:
        sock.sendall(b"GET /echo?token=manyheaders HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sent = send_until_refused(sock, [b"".join(lines[i:i + 10]) for i in range(0, 2000, 10)], pause_s=0.02)
        reply = read_reply(sock)
    finally:
        sock.close()
    assert status_of(reply) == 431, reply[:200]
    assert b"max_headers=90" in reply
    assert sent < len(b"".join(lines[:400])), f"{sent} bytes of headers were taken before the refusal"


def test_a_1_mb_header_line_is_refused_with_431_after_about_max_header_bytes(engine):
    sock = open_socket(engine.port, "127.0.0.16")
    try:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        sent = send_until_refused(sock, [b"a" * 4096] * 256)  # 1 MiB, 4 KiB at a time
        reply = read_reply(sock)
    finally:
        sock.close()
    assert status_of(reply) == 431, reply[:200]
    assert b"max_header_bytes=15000" in reply
    assert sent < 128 * 1024, f"{sent} bytes of one header line were taken before the refusal"


def test_many_headers_summing_past_max_header_bytes_are_refused_while_sending(engine):
    sock = open_socket(engine.port, "127.0.0.17")
    try:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        lines = [b"X-Pad-%d: %s\r\n" % (i, b"a" * 4000) for i in range(80)]  # 320 kB in 80 headers
        sent = send_until_refused(sock, lines)
        reply = read_reply(sock)
    finally:
        sock.close()
    assert status_of(reply) == 431, reply[:200]
    assert sent < 128 * 1024, f"{sent} bytes of headers were taken before the refusal"


def test_url_over_max_request_line_bytes_is_414(engine):
    sock = open_socket(engine.port, "127.0.0.18")
    try:
        sock.sendall(b"GET /echo?pad=")
        send_until_refused(sock, [b"a" * 4096] * 64)
        reply = read_reply(sock)
    finally:
        sock.close()
    assert status_of(reply) == 414, reply[:200]
    assert b"max_request_line_bytes" in reply


def test_malformed_heads_are_answered_400_without_an_error_logged_for_each(engine):
    before = engine.logs().count('"level": "error"')
    for i in range(20):
        sock = open_socket(engine.port, "127.0.0.19")
        try:
            sock.sendall(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header %d: v\r\n\r\n" % i)
            reply = read_reply(sock)
        finally:
            sock.close()
        assert status_of(reply) == 400, reply[:200]
        assert b"could not be parsed" in reply
    time.sleep(0.5)
    assert engine.logs().count('"level": "error"') == before


def test_large_body_sent_with_its_head_in_one_write_is_not_mistaken_for_a_large_head(engine):
    body = b"x" * (512 * 1024)
    head = b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body)
    sock = open_socket(engine.port, "127.0.0.19")
    try:
        sock.sendall(head + body)
        reply = sock.recv(65536)
    finally:
        sock.close()
    assert status_of(reply) == 200, reply[:200]


def test_pipelined_requests_each_get_their_own_head_budget(engine):
    one = b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 10_000 + b"\r\n\r\n"
    sock = open_socket(engine.port, "127.0.0.20")
    try:
        sock.sendall(one * 5)  # 50 kB of heads in one write, each within the limits
        replies = b""
        while replies.count(b"HTTP/1.1 200") < 5:
            data = sock.recv(65536)
            assert data, f"connection closed after {replies.count(b'HTTP/1.1 200')} replies: {replies[-300:]!r}"
            replies += data
    finally:
        sock.close()


# --- connection caps -------------------------------------------------------------------------


def _keep_alive_connection(engine, source: str) -> socket.socket:
    """A connection that has been answered once and now sits idle in keep-alive."""
    sock = open_socket(engine.port, source)
    sock.sendall(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status_of(sock.recv(65536)) == 200
    return sock


def test_connection_over_max_connections_per_client_is_refused_while_other_clients_get_200(engine):
    wait_connections(engine, 0)
    held = []
    try:
        held = [_keep_alive_connection(engine, "127.0.0.21") for _ in range(PER_CLIENT)]
        extra = open_socket(engine.port, "127.0.0.21")
        try:
            try:
                extra.sendall(b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            assert read_reply(extra) == b"", "connection over max_connections_per_client was served"
        finally:
            extra.close()
        assert get_echo(engine, "127.0.0.22") == 200  # another client is served meanwhile
        held.pop().close()
        wait_connections(engine, PER_CLIENT - 1)
        assert get_echo(engine, "127.0.0.21") == 200  # the freed slot is usable again
    finally:
        for sock in held:
            sock.close()
    refused = httpx.get(engine.admin_url + "/metrics").text
    assert re.search(r'^functions_engine_connections_refused_total\{limit="max_connections_per_client"\} [1-9]', refused, re.M)


def test_connection_over_max_connections_is_refused(engine):
    wait_connections(engine, 0)
    held = []
    try:
        for i in range(TOTAL):  # from distinct addresses, so only the global cap applies
            held.append(_keep_alive_connection(engine, f"127.0.1.{i + 1}"))
        extra = open_socket(engine.port, "127.0.2.1")
        try:
            assert read_reply(extra) == b"", "connection over max_connections was served"
        finally:
            extra.close()
        held.pop().close()
        wait_connections(engine, TOTAL - 1)
        assert get_echo(engine, "127.0.2.2") == 200
    finally:
        for sock in held:
            sock.close()


# --- memory under a flood --------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_engine(module_engine_factory, backend, request):
    """The default limits: what a deployment gets."""
    return _start(module_engine_factory, backend, request)


FLOOD_SOURCES = [f"127.0.3.{i}" for i in range(1, 11)]
FLOOD_PER_SOURCE = 30  # 300 connections, under the default max_connections_per_client (256)


def test_flood_of_slow_oversized_heads_keeps_engine_memory_flat(default_engine):
    """300 connections each trickling 256 kB of headers (4 kB every 150 ms) for up to 12 s.

    Before heads were metered while read, the same flood grew the engine's RSS by about 155 MB
    (it buffered every byte); now each is refused after about 31 kB.
    """
    engine = default_engine
    for _ in range(20):
        assert get_echo(engine) == 200
    before = rss_bytes(engine.proc.pid)
    peak, results = sample_rss_during(engine.proc.pid, 60, lambda: header_flood(
        engine.port, sources=FLOOD_SOURCES, per_source=FLOOD_PER_SOURCE, total_bytes=256 * 1024,
        line_bytes=4096, interval_s=0.15, hold_s=12,
    ))
    growth_mb = (peak - before) / 2**20
    print(f"engine RSS before {before / 2**20:.1f} MB, peak {peak / 2**20:.1f} MB, growth {growth_mb:.1f} MB")
    failures = [r for r in results if isinstance(r, BaseException)]
    assert not failures, failures[:3]
    statuses = {status_of(r.reply) for r in results}
    assert statuses == {431}, statuses
    assert max(r.sent for r in results) < 64 * 1024
    assert growth_mb < 64, f"engine RSS grew by {growth_mb:.1f} MB under the flood"
    assert get_echo(engine) == 200


# --- slow readers ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_reply_engine(module_engine_factory, backend, request):
    """Replies larger than the kernel's socket buffers (at most 4 MB for the sender on Linux), and a
    short write deadline; a time limit long enough to move 8 MB through a loaded docker attach."""
    if backend != "process":
        request.getfixturevalue("docker_available")
    return module_engine_factory(PROJECTS / "front", backend=backend, config={
        "response_write_timeout_s": WRITE_TIMEOUT_S, "max_response_bytes": 32 * 2**20,
        "max_frame_bytes": 64 * 2**20, "time_limit_s": 60,
    })


WRITE_TIMEOUT_S = 2.0


def test_client_that_never_reads_its_reply_is_dropped_after_response_write_timeout(big_reply_engine):
    engine = big_reply_engine
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a tiny window: the reply backs up in the engine
    sock.settimeout(30)
    try:
        sock.bind(("127.0.0.31", 0))
        sock.connect(("127.0.0.1", engine.port))
        sock.sendall(b"GET /big?size=8000000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        started = time.monotonic()
        while time.monotonic() - started < WRITE_TIMEOUT_S + 20:
            metrics = httpx.get(engine.admin_url + "/metrics", timeout=10).text
            if re.search(r'^functions_engine_connections_refused_total\{limit="response_write_timeout"\} [1-9]', metrics, re.M):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("a client that never read its 8 MB reply was never dropped")
        assert time.monotonic() - started >= WRITE_TIMEOUT_S - 0.5
        wait_connections(engine, 0)
    finally:
        sock.close()
    with engine.client() as client:
        assert len(client.get("/big", params={"size": "8000000"}).content) == 8_000_000  # a reader gets it all
