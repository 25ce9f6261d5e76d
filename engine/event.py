"""Building the handler's `event` and `context` from a parsed request (behavior.md: event, context)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

# Hop-by-hop, proxy and infrastructure headers the hosted service does not pass to handlers.
_DROPPED = frozenset(
    {"host", "connection", "upgrade", "via", "referer", "transfer-encoding", "x-real-ip", "expect", "trailer"}
)
_DROPPED_PREFIXES = ("proxy-", "x-forwarded-", "x-amz", "x-accel-")

Params = dict[str, Any]


def collapse(pairs: Iterable[tuple[str, str]]) -> Params:
    """Ordered pairs → dict; a repeated key becomes a list of its values in arrival order."""
    out: Params = {}
    for key, value in pairs:
        if key in out:
            current = out[key]
            if isinstance(current, list):
                current.append(value)
            else:
                out[key] = [current, value]
        else:
            out[key] = value
    return out


def event_headers(raw: Iterable[tuple[str, str]]) -> Params:
    """Lowercased request headers without the dropped ones; repeated headers become lists."""
    kept = []
    for name, value in raw:
        lower = name.lower()
        if lower in _DROPPED or lower.startswith(_DROPPED_PREFIXES):
            continue
        kept.append((lower, value))
    return collapse(kept)


def parse_cookies(header_values: Iterable[str]) -> dict[str, str]:
    """`Cookie` headers → {name: value}, URL-decoded, first occurrence wins.

    Not `http.cookies.SimpleCookie`: it discards every cookie after one it finds malformed and
    lets the last duplicate win, both unlike the hosted service.
    """
    cookies: dict[str, str] = {}
    for header in header_values:
        for part in header.split(";"):
            name, sep, value = part.strip().partition("=")
            if not sep or not name:
                continue
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            key = unquote(name.strip())
            if key not in cookies:
                cookies[key] = unquote(value)
    return cookies


def build_event(
    query: Iterable[tuple[str, str]],
    body: Mapping[str, Any] | None,
    headers: Iterable[tuple[str, str]],
) -> Params:
    """Query, then body keys over them, then `request` unless a key named `request` was sent."""
    raw_headers = list(headers)
    event = collapse(query)
    if body:
        event.update(body)
    if "request" not in event:
        event["request"] = {
            "headers": event_headers(raw_headers),
            "cookies": parse_cookies(v for k, v in raw_headers if k.lower() == "cookie"),
        }
    return event


def build_context(path: str, domain_name: str, service_sid: str, environment_sid: str) -> dict[str, str]:
    """The per-invocation built-ins; the runner lays the service's `.env` over them."""
    return {
        "PATH": path,
        "DOMAIN_NAME": domain_name,
        "SERVICE_SID": service_sid,
        "ENVIRONMENT_SID": environment_sid,
    }
