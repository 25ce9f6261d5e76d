"""The admin listener: liveness, readiness and metrics, on a port no function path can shadow."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engine import metrics

ReadyCheck = Callable[[], Awaitable[tuple[bool, str]]]
READY_KEY = web.AppKey("ready_check", ReadyCheck)


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    ok, detail = await request.app[READY_KEY]()
    return web.Response(status=200 if ok else 503, text=detail + "\n")


async def metrics_endpoint(request: web.Request) -> web.Response:
    body = generate_latest(metrics.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def make_admin_app(ready_check: ReadyCheck) -> web.Application:
    app = web.Application()
    app[READY_KEY] = ready_check
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    return app
