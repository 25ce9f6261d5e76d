"""The front door: HTTP in (behavior.md "HTTP in"), and the one place errors become statuses."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import structlog
from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from engine import cookie_scope, invoke, metrics, reply, signature
from engine import event as event_mod
from engine.config import Settings
from engine.errors import EngineError, PoolError, WorkerError
from engine.forwarded import Origin, ProxyTrust
from engine.routing import Route, Router
from engine.worker import InvocationTimeout

log = structlog.get_logger("engine.http")

ROUTER_KEY = web.AppKey("router", Router)
SETTINGS_KEY = web.AppKey("settings", Settings)
TRUST_KEY = web.AppKey("proxy_trust", ProxyTrust)
REQUEST_ID = "X-Request-Id"
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_FUNCTION_METHODS = ("GET", "POST", "OPTIONS")
_ASSET_METHODS = ("GET", "HEAD", "OPTIONS")
_PREFLIGHT = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "*",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Request ids: a random prefix per engine process and a counter, 32 hex digits like a uuid4 but
# without a trip to the kernel's random source for every request.
_ID_PREFIX = secrets.token_hex(8)
_id_counter = itertools.count()


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_id_counter):016x}"


class BadRequest(EngineError):
    """The request itself is wrong (400), with a message saying how."""


class SlowBody(EngineError):
    """The request body did not arrive within `body_read_timeout_s` (408; the connection is closed)."""


def map_error(exc: BaseException, time_limit_s: float | None) -> web.Response:
    """Every engine failure on the request path becomes exactly one status here."""
    if isinstance(exc, InvocationTimeout):
        limit = f" of {time_limit_s:g} s" if time_limit_s else ""
        return reply.text_reply(504, f"The function timed out: it did not call callback() within its time limit{limit}.")
    if isinstance(exc, PoolError):
        return reply.text_reply(503, f"Service unavailable: {exc}", {"Retry-After": str(exc.retry_after_s)})
    if isinstance(exc, WorkerError):
        return reply.text_reply(502, f"The function's worker failed: {exc}")
    if isinstance(exc, BadRequest):
        return reply.text_reply(400, f"Bad request: {exc}")
    if isinstance(exc, SlowBody):
        response = reply.text_reply(408, f"Request timeout: {exc}")
        response.force_close()
        return response
    log.error("engine_error", error=repr(exc))
    return reply.text_reply(500, "The engine failed to run the function; see the engine log.")


@web.middleware
async def front_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, header limits, error mapping and the one log line per invocation."""
    settings = request.app[SETTINGS_KEY]
    incoming = request.headers.get(REQUEST_ID, "")
    request_id = incoming if incoming and _REQUEST_ID_OK.match(incoming) else new_request_id()
    request["request_id"] = request_id
    origin = request["origin"] = request.app[TRUST_KEY].origin(request)
    started = time.perf_counter()
    header_bytes = sum(len(k) + len(v) + 4 for k, v in request.raw_headers)
    if len(request.raw_headers) > settings.max_headers or header_bytes > settings.max_header_bytes:
        response: web.StreamResponse = reply.text_reply(
            431,
            f"Request headers too large: {len(request.raw_headers)} headers, {header_bytes} bytes "
            f"(limits: max_headers={settings.max_headers}, max_header_bytes={settings.max_header_bytes}).",
        )
    else:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = reply.text_reply(exc.status, exc.text or exc.reason, _allow(exc))
        except ConnectionError:  # the client went away mid-request: nobody to answer
            raise
        except Exception as exc:  # map_error logs anything unexpected as `engine_error` and answers 500
            route: Route | None = request.get("route")
            limit = route.service.time_limits_s.get(route.function.url_path) if route and route.function else None
            response = map_error(exc, limit)
            request["close_now"] = isinstance(exc, SlowBody)
    response.headers[REQUEST_ID] = request_id
    route = request.get("route")
    if route is None or route.function is None:  # assets, 404s, 431s: one bounded label value
        service = route.service if route else request.app[ROUTER_KEY].service_for(origin.host)
        metrics.invocations(service.name if service else metrics.NO_LABEL, metrics.NO_LABEL, metrics.NO_LABEL,
                            response.status).inc()
    else:
        elapsed = time.perf_counter() - started
        fn = route.function
        metrics.invocations(route.service.name, fn.name, fn.runtime, response.status).inc()
        metrics.invocation_seconds(route.service.name, fn.name, fn.runtime).observe(elapsed)
        log.info(
            "invocation", invocation_id=request_id, service=route.service.name, function=fn.name,
            runtime=fn.runtime, method=request.method, status=response.status,
            duration_ms=round(elapsed * 1000, 2), worker_id=request.get("worker_id"),
            cold=request.get("cold"), bytes_in=request.content_length or 0,
            bytes_out=response.content_length or 0,
        )
    if isinstance(response, web.Response):  # in memory; file responses stream from disk
        await _send_within(request, response, settings.response_write_timeout_s)
    if request.get("close_now") and request.protocol is not None:
        request.protocol.force_close()  # after a 408: don't linger reading the rest of a slow body
    return response


async def _send_within(request: web.Request, response: web.Response, timeout_s: float) -> None:
    """Send the reply now, so a client that does not read cannot hold it (and a connection) for ever.

    aiohttp's own write after the handler has no deadline. On `response_write_timeout_s` the
    connection is dropped; a client gone mid-write is left to aiohttp, as before.
    """
    try:
        async with asyncio.timeout(timeout_s):
            await response.prepare(request)
            await response.write_eof()
    except TimeoutError:
        metrics.connections_refused("response_write_timeout")
        log.debug("connection_cut", limit="response_write_timeout_s", seconds=timeout_s,
                  invocation_id=request.get("request_id"))
        if request.transport is not None:
            request.transport.abort()
    except ConnectionError:
        pass


def _allow(exc: web.HTTPException) -> dict[str, str]:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else {}


async def handle(request: web.Request) -> web.StreamResponse:
    router = request.app[ROUTER_KEY]
    settings = request.app[SETTINGS_KEY]
    origin: Origin = request["origin"]
    route = router.route(origin.host, request.path)
    if route is None:
        return reply.text_reply(404, f"Not found: nothing is served at {request.path[:200]}.")
    request["route"] = route
    # Counted from routing to the answer, so a replaced service drains the requests it already took.
    route.service.enter()
    try:
        return await _serve(request, route, settings, origin)
    finally:
        route.service.leave()


async def _serve(request: web.Request, route: Route, settings: Settings, origin: Origin) -> web.StreamResponse:
    allowed = _FUNCTION_METHODS if route.function else _ASSET_METHODS
    if request.method == "OPTIONS":
        return web.Response(status=204, headers=_PREFLIGHT)
    if request.method not in allowed:
        return reply.text_reply(
            405, f"Method {request.method} not allowed here; use {', '.join(allowed)}.", {"Allow": ", ".join(allowed)}
        )
    raw_body, form, json_body = await _read_body(request, settings)
    visibility = route.function.visibility if route.function else route.asset.visibility  # type: ignore[union-attr]
    if visibility == "protected":
        url = signature.public_url(origin, request.raw_path)
        token = route.service.auth_token
        if not signature.is_valid(token, url, request.headers.get("X-Twilio-Signature"), form, raw_body):
            hint = "" if token else " (the service has no AUTH_TOKEN in its .env, so no signature can be valid)"
            return reply.text_reply(403, f"Forbidden: missing or invalid X-Twilio-Signature{hint}.")
    if route.asset is not None:
        return web.FileResponse(route.asset.path, headers={"Content-Type": route.asset.content_type})
    function = route.function
    assert function is not None
    body_params = json_body if json_body is not None else (event_mod.collapse(form.items()) if form else None)
    event = event_mod.build_event(request.query.items(), body_params, request.headers.items())
    context = event_mod.build_context(
        request.path, origin.host, route.service.service_sid, route.service.environment_sid
    )
    outcome = await invoke.run(
        route.service, function, request["request_id"], event, context,
        acquire_timeout_s=settings.acquire_timeout_s,
        max_log_bytes=settings.max_log_bytes,
        max_response_bytes=settings.max_response_bytes,
        trace=request,
    )
    request["worker_id"] = outcome.worker_id
    request["cold"] = outcome.cold
    for removed in cookie_scope.scope_headers(outcome.response.headers, origin.hostname):
        log.warning("cookie_domain_removed", invocation_id=request["request_id"], service=route.service.name,
                    function=function.name, cookie=removed.cookie[:100], domain=removed.domain[:200],
                    host=origin.hostname,
                    reason="a Set-Cookie Domain may only name the request's own host; the cookie is now host-only")
    return outcome.response


async def _read_body(
    request: web.Request, settings: Settings
) -> tuple[bytes, MultiDictProxy[str] | None, dict[str, Any] | None]:
    """Body bytes (≤ max_body_bytes, else 413; within body_read_timeout_s, else 408), parsed if form or JSON."""
    try:
        async with asyncio.timeout(settings.body_read_timeout_s):
            return await _read_body_now(request, settings)
    except TimeoutError:
        raise SlowBody(
            f"the request body did not arrive within body_read_timeout_s={settings.body_read_timeout_s:g} s; "
            "send it at once (or raise the limit)"
        ) from None


async def _read_body_now(
    request: web.Request, settings: Settings
) -> tuple[bytes, MultiDictProxy[str] | None, dict[str, Any] | None]:
    if request.content_length is not None and request.content_length > settings.max_body_bytes:
        raise web.HTTPRequestEntityTooLarge(
            max_size=settings.max_body_bytes, actual_size=request.content_length,
            text=f"Request body of {request.content_length} bytes is over max_body_bytes={settings.max_body_bytes}.",
        )
    if not request.body_exists:
        return b"", None, None
    ctype = request.content_type
    if ctype == "multipart/form-data":
        post = await request.post()
        fields = MultiDict((k, v) for k, v in post.items() if isinstance(v, str))
        return b"", MultiDictProxy(fields), None
    raw = await request.read()
    if ctype == "application/x-www-form-urlencoded":
        charset = request.charset or "utf-8"
        try:
            pairs = parse_qsl(raw.decode(charset), keep_blank_values=True)
        except (UnicodeDecodeError, LookupError) as exc:
            raise BadRequest(f"form body is not valid {charset}: {exc}") from exc
        return raw, MultiDictProxy(MultiDict(pairs)), None
    if ctype == "application/json" or ctype.endswith("+json"):
        try:
            parsed = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"malformed JSON body (Content-Type: {ctype}): {exc}") from exc
        return raw, None, parsed if isinstance(parsed, dict) else None
    return raw, None, None


def make_app(router: Router, settings: Settings, trust: ProxyTrust) -> web.Application:
    """The functions listener's app; its connections are `http_conn.FrontRunner`'s."""
    app = web.Application(middlewares=[front_middleware], client_max_size=settings.max_body_bytes)
    app[ROUTER_KEY] = router
    app[SETTINGS_KEY] = settings
    app[TRUST_KEY] = trust
    app.router.add_route("*", "/{tail:.*}", handle)
    return app
