"""The front listener's connections: what a client may cost the engine before a request exists.

aiohttp parses each request head into Python objects as it arrives and has no limit on a head's
total size nor on how long it may take. Here, while reading:

- a request head (request line + headers) may be at most `max_request_line_bytes +
  max_header_bytes` bytes; past that the connection is answered 431 and nothing more is parsed,
  so a hostile head costs about that much memory, not what the client sends. aiohttp's own
  per-line and per-count limits (a request line over `max_request_line_bytes`: 414; one header
  over `max_header_bytes` or more than `max_headers`: 431) are answered the same way;
- a head must arrive within `header_read_timeout_s` (from accept, or from its first byte on a
  kept-alive connection), else the connection is closed (slowloris);
- a peer address holds at most `max_connections_per_client` connections (an IPv6 /64 counts as
  one address; trusted proxies are exempt, as they carry many clients), and the listener at most
  `max_connections`; a connection over either is closed at once.

The body's budget (`body_read_timeout_s`, `max_body_bytes`) is enforced where it is read, and the
reply's (`response_write_timeout_s`) where it is sent, in `http_front`; so are the exact count and
size checks of a complete head.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import Counter
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError, LineTooLong

from engine import metrics, reply
from engine.http_front import REQUEST_ID, make_app, new_request_id
from engine.routing import Router
from engine.config import Settings
from engine.forwarded import ProxyTrust, parse_address

log = structlog.get_logger("engine.http")


@dataclass(frozen=True)
class ConnectionLimits:
    """The front listener's per-connection limits, read from the settings once at start-up."""

    max_request_line_bytes: int
    max_header_bytes: int
    max_headers: int
    header_read_timeout_s: float
    keepalive_timeout_s: float
    max_connections_per_client: int
    max_connections: int

    @classmethod
    def from_settings(cls, s: Settings) -> ConnectionLimits:
        return cls(
            s.max_request_line_bytes, s.max_header_bytes, s.max_headers, s.header_read_timeout_s,
            s.keepalive_timeout_s, s.max_connections_per_client, s.max_connections,
        )

    @property
    def head_budget(self) -> int:
        """Bytes a request head may take, request line and final blank line included."""
        return self.max_request_line_bytes + self.max_header_bytes + 2

    def handler_args(self) -> dict[str, Any]:
        """aiohttp's own parser limits (set to ours, so its refusals agree) and keep-alive."""
        return {
            "max_line_size": self.max_request_line_bytes,
            "max_field_size": self.max_header_bytes,
            "max_headers": self.max_headers,
            "keepalive_timeout": self.keepalive_timeout_s,
        }


class RequestHeadRefused(HttpProcessingError):
    """A request head over a limit, refused while it was being read (414 or 431)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(code=status, message=text)
        self.status = status
        self.text = text


class ConnectionCounts:
    """Open connections, in all and per peer address, for the two connection caps."""

    def __init__(self, limits: ConnectionLimits, trust: ProxyTrust) -> None:
        self._limits = limits
        self._trust = trust
        self._per_client: Counter[str] = Counter()
        self.total = 0

    def admit(self, peer: str) -> tuple[str | None, str | None]:
        """(key to release later, None) if the connection may stay; (None, the limit's name) if not."""
        if self.total >= self._limits.max_connections:
            return None, "max_connections"
        key = "" if self._trust.trusts(peer) else client_key(peer)
        if key and self._per_client[key] >= self._limits.max_connections_per_client:
            return None, "max_connections_per_client"
        self.total += 1
        if key:
            self._per_client[key] += 1
        metrics.OPEN_CONNECTIONS.set(self.total)
        return key, None

    def release(self, key: str) -> None:
        self.total -= 1
        if key:
            self._per_client[key] -= 1
            if self._per_client[key] <= 0:
                del self._per_client[key]
        metrics.OPEN_CONNECTIONS.set(self.total)


def client_key(peer: str) -> str:
    """What the per-client cap counts by: the address, or its /64 for IPv6 (one subscriber's)."""
    address = parse_address(peer)
    if address is None:
        return peer
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class HeadMeter:
    """Stands in for the connection's aiohttp parser and counts the bytes of each request head.

    A head is what arrives after the previous request's body has been received in full (or from
    the start); it ends when the parser hands over a message. Bytes that would take the head past
    `head_budget` are never given to the parser. Everything else is the parser's own (including
    the start of a pipelined head in the read that ended a body: at most one read, under the
    parser's per-line and per-count limits).
    """

    def __init__(self, parser: Any, limits: ConnectionLimits, conn: FrontConnection) -> None:
        self._parser = parser
        self._limits = limits
        self._conn = conn
        self._body: Any = None  # the last message's payload stream
        self._head_bytes = 0
        self._line_end: int | None = None  # offset of the request line's end in the head, once seen
        self._head_lines = 0  # line ends seen in the head (and in the rest of the chunk that ended it)
        self.refused = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parser, name)

    def _reading_head(self) -> bool:
        return self._body is None or self._body.is_eof()

    def feed_data(self, data: bytes) -> tuple[list[Any], bool, bytes]:
        if self.refused:
            return [], False, b""
        if not data or not self._reading_head():
            return self._feed(data)
        if self._head_bytes == 0:
            self._conn.head_started()
        if self._line_end is None and (nl := data.find(b"\n")) >= 0:
            self._line_end = self._head_bytes + nl
        room = self._limits.head_budget - self._head_bytes
        self._head_bytes += min(len(data), room + 1)
        self._head_lines += data.count(b"\n", 0, room + 1)
        if len(data) <= room:
            return self._feed(data)
        messages, upgraded, tail = self._feed(data[:room])
        if not messages:
            self.refused = True
            raise self._too_large()
        if upgraded:
            return messages, upgraded, tail + data[room:]
        more, upgraded, tail = self.feed_data(data[room:])
        return [*messages, *more], upgraded, tail

    def _feed(self, data: bytes) -> tuple[list[Any], bool, bytes]:
        try:
            messages, upgraded, tail = self._parser.feed_data(data)
        except HttpProcessingError as exc:
            self.refused = True
            raise self._translate(exc) from exc
        if messages:
            self._body = messages[-1][1]
            self._head_bytes = self._head_lines = 0
            self._line_end = None
            self._conn.head_done()
        return messages, upgraded, tail

    def _too_large(self) -> RequestHeadRefused:
        limits = self._limits
        if self._line_end is None or self._line_end > limits.max_request_line_bytes:
            return _url_too_long(limits)
        return RequestHeadRefused(
            431, f"Request headers too large: over max_header_bytes={limits.max_header_bytes} bytes "
                 f"(limits: max_headers={limits.max_headers}, max_header_bytes={limits.max_header_bytes}).",
        )

    def _translate(self, exc: HttpProcessingError) -> HttpProcessingError:
        """aiohttp's own limit errors as ours; any other parse error stays its 400."""
        if not self._reading_head():
            return exc
        if isinstance(exc, LineTooLong):
            return self._too_large()
        if isinstance(exc, BadHttpMessage) and self._head_lines >= self._limits.max_headers + 2:
            # aiohttp's "Too many headers received", recognised by the request line and more than
            # max_headers header lines having arrived rather than by its wording.
            return RequestHeadRefused(
                431, f"Request headers too large: more than max_headers={self._limits.max_headers} headers "
                     f"(limits: max_headers={self._limits.max_headers}, max_header_bytes={self._limits.max_header_bytes}).",
            )
        return exc


def _url_too_long(limits: ConnectionLimits) -> RequestHeadRefused:
    return RequestHeadRefused(
        414, f"Request line too long: the method, URL and version are over "
             f"max_request_line_bytes={limits.max_request_line_bytes} bytes.",
    )


class FrontConnection(web.RequestHandler):
    """aiohttp's request handler plus the connection caps, the head meter and the head timeout."""

    def __init__(self, manager: web.Server, *, guard: FrontGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._meter = HeadMeter(self._parser, guard.limits, self)
        self._parser = self._meter
        self._count_key: str | None = None
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peername = transport.get_extra_info("peername")
        peer = str(peername[0]) if isinstance(peername, tuple) and peername else ""
        key, refused_by = self._guard.counts.admit(peer)
        if refused_by is not None:
            metrics.connections_refused(refused_by)
            log.debug("connection_refused", peer=peer, limit=refused_by)
            transport.close()
            return
        self._count_key = key
        super().connection_made(transport)
        self.head_started()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._count_key is None:  # refused in connection_made: aiohttp never saw it
            return
        self._guard.counts.release(self._count_key)
        self._count_key = None
        self.head_done()
        super().connection_lost(exc)

    def head_started(self) -> None:
        if self._head_timer is None:
            self._head_timer = asyncio.get_running_loop().call_later(
                self._guard.limits.header_read_timeout_s, self._head_timed_out
            )

    def head_done(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        metrics.connections_refused("header_read_timeout")
        log.debug("connection_cut", limit="header_read_timeout_s", seconds=self._guard.limits.header_read_timeout_s)
        self._meter.refused = True
        self.force_close()
        if self.transport is not None:
            self.transport.close()

    def handle_error(
        self, request: Any, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        """Refusals while reading, ours (414, 431) and the parser's (400), answered without the
        traceback aiohttp would log for each: a client sending garbage cannot flood the log."""
        if isinstance(exc, RequestHeadRefused):
            status, text = exc.status, exc.text
        elif isinstance(exc, HttpProcessingError) and status == 400:
            reason = (exc.message or "").splitlines()[0][:200] if exc.message else "malformed request"
            status, text = 400, f"Bad request: the request could not be parsed as HTTP/1.1 ({reason})."
            log.debug("bad_request", error=reason)
        else:
            return super().handle_error(request, status, exc, message)
        response = reply.text_reply(status, text, {REQUEST_ID: new_request_id()})
        response.force_close()
        metrics.invocations(self._guard.service_label, metrics.NO_LABEL, metrics.NO_LABEL, status).inc()
        return response


class FrontGuard:
    """State shared by the listener's connections: the limits and the open-connection counts."""

    def __init__(self, limits: ConnectionLimits, trust: ProxyTrust, service_label: str) -> None:
        self.limits = limits
        self.counts = ConnectionCounts(limits, trust)
        # A head refused before its Host was read is counted for the one service if there is
        # only one (every request goes to it), else under "(none)".
        self.service_label = service_label


class FrontServer(web.Server):
    """aiohttp's server, making `FrontConnection`s."""

    def __init__(self, *args: Any, guard: FrontGuard, handler_args: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = guard
        self._handler_args = handler_args

    def __call__(self) -> FrontConnection:
        return FrontConnection(self, loop=asyncio.get_running_loop(), guard=self._guard, **self._handler_args)


class FrontRunner(web.AppRunner):
    """An `AppRunner` whose server is a `FrontServer` (the app's start-up and freeze are aiohttp's)."""

    def __init__(self, app: web.Application, guard: FrontGuard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._guard = guard

    async def _make_server(self) -> web.Server:
        base = await super()._make_server()
        handler_args = {"access_log": None, **self._guard.limits.handler_args()}
        return FrontServer(
            base.request_handler, request_factory=base.request_factory,
            handler_cancellation=base.handler_cancellation, guard=self._guard, handler_args=handler_args,
        )


def front_runner(router: Router, settings: Settings, *, shutdown_timeout_s: float) -> FrontRunner:
    """The functions listener: the app of `http_front` behind this module's connection limits."""
    trust = ProxyTrust(settings.behind_proxy, settings.trusted_proxies)
    only = router.service_for("")
    guard = FrontGuard(ConnectionLimits.from_settings(settings), trust, only.name if only else metrics.NO_LABEL)
    return FrontRunner(make_app(router, settings, trust), guard, access_log=None, shutdown_timeout=shutdown_timeout_s)
