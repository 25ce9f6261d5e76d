"""The control listener: route tables, HTTP Basic auth, and the one place errors become bodies."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import structlog
from aiohttp import web

from engine.config import KiB, Settings
from engine.control.accounts import Authenticator
from engine.control.errors import ApiError, NotFound, StoreUnavailable, TooLarge, Unauthenticated
from engine.control.store import Store

log = structlog.get_logger("engine.control")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Room for the multipart envelope and the text fields around one uploaded version.
_FORM_OVERHEAD_BYTES = 64 * KiB


@dataclass
class Control:
    """What every handler needs: the store, the settings, the build runner and the converger."""

    store: Store
    settings: Settings
    auth: Authenticator
    builds: Any  # engine.control.builds.Builder
    converger: Any  # engine.control.converge.Converger


CONTROL = web.AppKey("control", Control)


def control(request: web.Request) -> Control:
    return request.app[CONTROL]


def account(request: web.Request) -> str:
    """The authenticated account's SID: every query filters on it."""
    return request["account_sid"]


def _json_error(error: ApiError) -> web.Response:
    headers = {"WWW-Authenticate": 'Basic realm="functions-engine"'} if error.status == 401 else None
    if isinstance(error, StoreUnavailable):
        headers = {"Retry-After": str(error.retry_after_s)}
    return web.json_response(error.body(), status=error.status, headers=headers)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """ApiError → its status and body (the store unreachable → 503, raised by store.py); aiohttp's own
    4xx (bad route, body too large) → same shape; anything else → 500."""
    try:
        return await handler(request)
    except ApiError as exc:
        return _json_error(exc)
    except web.HTTPRequestEntityTooLarge:
        limit = control(request).settings.max_version_bytes
        return _json_error(TooLarge(f"request body over max_version_bytes ({limit} bytes)"))
    except web.HTTPException as exc:
        if exc.status == 404:
            return _json_error(NotFound(f"no resource at {request.path}"))
        if exc.status == 405:
            error = ApiError(f"method {request.method} is not allowed on {request.path}")
            error.status, error.code = 405, 20004
            return _json_error(error)
        raise
    except Exception:
        log.exception("control_api_error", path=request.path, method=request.method)
        return _json_error(ApiError("internal error in the control API; the engine log has the details"))


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """HTTP Basic with `AC…:token` or `SK…:secret`; anything else is 401 before any lookup."""
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise Unauthenticated("authentication required: HTTP Basic with AccountSid:AuthToken or ApiKeySid:Secret")
    try:
        username, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthenticated("the Authorization header is not valid HTTP Basic") from None
    if not sep:
        raise Unauthenticated("the Authorization header is not valid HTTP Basic")
    ctl = control(request)
    async with ctl.store.connect() as conn:
        account_sid = await ctl.auth.account_for(conn, username, password)
    if account_sid is None:
        raise Unauthenticated("wrong credentials: unknown account or API key, or wrong token or secret")
    request["account_sid"] = account_sid
    return await handler(request)


def make_control_app(ctl: Control) -> web.Application:
    from engine.control.resources import (
        assets, builds, deployments, environments, functions, logs, services, variables, versions,
    )

    app = web.Application(
        middlewares=[errors, authenticate],
        client_max_size=ctl.settings.max_version_bytes + _FORM_OVERHEAD_BYTES,
    )
    app[CONTROL] = ctl
    for module in (services, environments, variables, functions, assets, versions, builds, deployments, logs):
        app.router.add_routes(module.routes)
    return app
