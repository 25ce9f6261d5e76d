"""Turning a worker's `result` into the HTTP reply, and the engine's own error replies.

The runner decides status, headers and body from the callback; the engine frames the reply: it
drops headers that could split or re-frame the response, and enforces the response size cap.
"""

from __future__ import annotations

import re

import structlog
from aiohttp import web
from multidict import CIMultiDict

from engine import protocol

log = structlog.get_logger("engine.reply")

# The engine frames the reply itself; a handler setting these could desynchronise the connection.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
TEXT = "text/plain; charset=utf-8"


def text_reply(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """An engine-made reply: plain text, one line saying what happened and what to do."""
    return web.Response(status=status, body=(message + "\n").encode(), headers={"Content-Type": TEXT, **(headers or {})})


def safe_headers(pairs: list[tuple[str, str]], invocation_id: str) -> CIMultiDict[str]:
    """The handler's headers minus framing headers and anything with CR, LF or a bad name."""
    headers: CIMultiDict[str] = CIMultiDict()
    for name, value in pairs:
        if name.lower() in _FRAMING_HEADERS:
            log.warning("header_dropped", invocation_id=invocation_id, header=name,
                        reason="the engine frames the reply; Content-Length/Transfer-Encoding/Connection are its own")
        elif not _TOKEN.match(name) or "\r" in value or "\n" in value or "\0" in value:
            log.warning("header_dropped", invocation_id=invocation_id, header=name[:100],
                        reason="header names must be tokens and values may not contain CR, LF or NUL")
        else:
            headers.add(name, value)
    return headers


def from_result(result: protocol.Result, max_response_bytes: int) -> web.Response:
    """The reply for a worker's result; 502 if it is over the response cap."""
    if result.error == "response_too_large":
        return too_large(result.size, max_response_bytes)
    body = result.body_bytes()
    if len(body) > max_response_bytes:
        return too_large(len(body), max_response_bytes)
    headers = safe_headers(result.headers, result.id)
    if not body and "Content-Type" not in headers:
        return web.Response(status=result.status, headers=headers)
    return web.Response(status=result.status, body=body, headers=headers)


def too_large(size: int | None, limit: int) -> web.Response:
    shown = f" ({size} bytes)" if size is not None else ""
    return text_reply(
        502, f"The function's response was too large{shown}: the limit is max_response_bytes={limit} bytes."
    )
