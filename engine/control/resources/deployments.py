"""Deployments: `/v1/Services/{ZS}/Environments/{ZE}/Deployments`; creating one moves the traffic."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import Row, insert, select, update

from engine.control import lookup
from engine.control import store as t
from engine.control.api import account, control
from engine.control.errors import BadRequest, NotFound
from engine.control.shapes import base_url, iso, new_sid, page, required
from engine.control.watch import announce

routes = web.RouteTableDef()
_PREFIX = "/v1/Services/{service}/Environments/{environment}/Deployments"


def render(request: web.Request, row: Row[Any]) -> dict[str, Any]:
    return {
        "sid": row.sid, "account_sid": row.account_sid, "service_sid": row.service_sid,
        "environment_sid": row.environment_sid, "build_sid": row.build_sid,
        "date_created": iso(row.date_created), "date_updated": iso(row.date_updated),
        "url": f"{base_url(request)}/Services/{row.service_sid}/Environments/{row.environment_sid}/Deployments/{row.sid}",
    }


async def _parents(conn: Any, request: web.Request) -> tuple[Row[Any], Row[Any]]:
    acct = account(request)
    service = await lookup.service(conn, acct, request.match_info["service"])
    return service, await lookup.environment(conn, acct, service.sid, request.match_info["environment"])


@routes.post(_PREFIX)
async def create(request: web.Request) -> web.Response:
    """Warm the build's pools, switch the environment's traffic to them, then record the deployment."""
    form = await request.post()
    build_sid = required(form, "BuildSid", 34)
    ctl, acct = control(request), account(request)
    async with ctl.store.connect() as conn:
        service, environment = await _parents(conn, request)
        build = (await conn.execute(select(t.builds).where(
            t.builds.c.sid == build_sid, t.builds.c.account_sid == acct, t.builds.c.service_sid == service.sid,
        ))).first()
    if build is None:
        raise BadRequest(f"BuildSid {build_sid} is not a build of service {service.unique_name}")
    if build.status != "completed":
        reason = f": {build.error}" if build.error else ""
        raise BadRequest(f"build {build_sid} is {build.status}{reason}; only a completed build can be deployed")
    sid, row = new_sid("ZD"), None

    async def record() -> None:
        nonlocal row
        when = t.now()
        async with ctl.store.begin() as conn:
            await conn.execute(insert(t.deployments).values(
                sid=sid, account_sid=acct, service_sid=service.sid, environment_sid=environment.sid,
                build_sid=build_sid, date_created=when, date_updated=when,
            ))
            await conn.execute(update(t.environments).where(t.environments.c.sid == environment.sid)
                               .values(build_sid=build_sid, date_updated=when))
            await announce(conn, environment.sid)  # every other replica serves it too
            row = (await conn.execute(select(t.deployments).where(t.deployments.c.sid == sid))).first()

    await ctl.converger.deploy(environment.sid, build_sid, record)
    return web.json_response(render(request, row), status=201)


@routes.get(_PREFIX)
async def list_(request: web.Request) -> web.Response:
    ctl = control(request)
    async with ctl.store.connect() as conn:
        _service, environment = await _parents(conn, request)
        query = (select(t.deployments).where(t.deployments.c.account_sid == account(request),
                                             t.deployments.c.environment_sid == environment.sid)
                 .order_by(t.deployments.c.date_created, t.deployments.c.sid))
        return await page(request, conn, query, "deployments", lambda row: render(request, row))


@routes.get(_PREFIX + "/{sid}")
async def fetch(request: web.Request) -> web.Response:
    ctl = control(request)
    async with ctl.store.connect() as conn:
        _service, environment = await _parents(conn, request)
        row = (await conn.execute(select(t.deployments).where(
            t.deployments.c.account_sid == account(request), t.deployments.c.environment_sid == environment.sid,
            t.deployments.c.sid == request.match_info["sid"],
        ))).first()
    if row is None:
        raise NotFound(f"deployment {request.match_info['sid']} not found in environment {environment.sid}")
    return web.json_response(render(request, row))
