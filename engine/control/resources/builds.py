"""Builds: `/v1/Services/{ZS}/Builds` (a set of versions + dependencies + runtime) and `…/Status`."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from aiohttp import web
from sqlalchemy import Row, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.control import lookup
from engine.control.accounts import quota
from engine.control import store as t
from engine.control.api import account, control
from engine.control.builds import parse_dependencies
from engine.control.errors import BadRequest, Conflict, TooLarge, TooMany
from engine.control.shapes import base_url, choice, iso, new_sid, optional, page

routes = web.RouteTableDef()

#: Runtimes a build may name; each runs on the engine's Node runner (Python functions run on the Python runner).
RUNTIMES = ("node18", "node20", "node22")
DEFAULT_RUNTIME = "node22"
#: Versions one build may hold at most.
MAX_BUILD_VERSIONS = 1000


def _version(row: Row[Any]) -> dict[str, Any]:
    return {
        "sid": row.sid, "account_sid": row.account_sid, "service_sid": row.service_sid,
        f"{row.kind}_sid": row.entry_sid, "date_created": iso(row.date_created), "path": row.path,
        "visibility": row.visibility,
    }


async def render(request: web.Request, conn: AsyncConnection, row: Row[Any]) -> dict[str, Any]:
    sids = json.loads(row.function_versions) + json.loads(row.asset_versions)
    versions = (await conn.execute(select(t.versions).where(t.versions.c.sid.in_(sids)))).all() if sids else []
    by_sid = {v.sid: v for v in versions}
    url = f"{base_url(request)}/Services/{row.service_sid}/Builds/{row.sid}"
    return {
        "sid": row.sid, "account_sid": row.account_sid, "service_sid": row.service_sid, "status": row.status,
        "asset_versions": [_version(by_sid[s]) for s in json.loads(row.asset_versions) if s in by_sid],
        "function_versions": [_version(by_sid[s]) for s in json.loads(row.function_versions) if s in by_sid],
        "dependencies": json.loads(row.dependencies), "runtime": row.runtime,
        "error": row.error,  # engine addition: why a build failed (the hosted API does not say)
        "date_created": iso(row.date_created), "date_updated": iso(row.date_updated), "url": url,
        "links": {"build_status": f"{url}/Status"},
    }


async def _versions(conn: AsyncConnection, acct: str, service_sid: str, sids: list[str], kind: str) -> list[Row[Any]]:
    """The named versions, each of this account's service and of the right kind, else 400 naming it."""
    if len(set(sids)) != len(sids):
        raise BadRequest(f"{kind.capitalize()}Versions names a version twice")
    rows = (await conn.execute(select(t.versions).where(t.versions.c.sid.in_(sids)))).all() if sids else []
    found = {r.sid: r for r in rows if r.account_sid == acct and r.service_sid == service_sid and r.kind == kind}
    for sid in sids:
        if sid not in found:
            raise BadRequest(f"{kind} version {sid} is not a version of a {kind} of service {service_sid}")
    return [found[s] for s in sids]


@routes.post("/v1/Services/{service}/Builds")
async def create(request: web.Request) -> web.Response:
    form = await request.post()
    function_sids = [str(v) for v in form.getall("FunctionVersions", [])]
    asset_sids = [str(v) for v in form.getall("AssetVersions", [])]
    if len(function_sids) + len(asset_sids) > MAX_BUILD_VERSIONS:
        raise BadRequest(f"a build holds at most {MAX_BUILD_VERSIONS} versions")
    dependencies = parse_dependencies(optional(form, "Dependencies", 64 * 1024))
    runtime = choice(form, "Runtime", RUNTIMES, DEFAULT_RUNTIME)
    ctl, acct, when = control(request), account(request), t.now()
    async with ctl.store.begin() as conn:
        service = await lookup.service(conn, acct, request.match_info["service"])
        functions = await _versions(conn, acct, service.sid, function_sids, "function")
        assets = await _versions(conn, acct, service.sid, asset_sids, "asset")
        paths: dict[tuple[str, str], str] = {}
        for v in [*functions, *assets]:
            clash = paths.setdefault((v.kind, v.path), v.sid)
            if clash != v.sid:
                raise BadRequest(f"versions {clash} and {v.sid} both claim the {v.kind} path {v.path}")
        size = sum(v.size_bytes for v in [*functions, *assets])
        max_build = await quota(conn, acct, "max_build_bytes", ctl.settings)
        if size > max_build:
            raise TooLarge(f"the build's versions total {size} bytes, over max_build_bytes ({max_build})")
        recent = await conn.scalar(select(func.count()).select_from(t.builds).where(
            t.builds.c.account_sid == acct, t.builds.c.date_created > when - timedelta(hours=1)))
        if recent >= await quota(conn, acct, "builds_per_hour", ctl.settings):
            raise TooMany(f"this account made {recent} builds in the last hour, the most builds_per_hour allows; try later")
        sid = new_sid("ZB")
        await conn.execute(insert(t.builds).values(
            sid=sid, account_sid=acct, service_sid=service.sid, status="building", runtime=runtime,
            dependencies=json.dumps(dependencies), function_versions=json.dumps(function_sids),
            asset_versions=json.dumps(asset_sids), size_bytes=size, error=None, date_created=when, date_updated=when,
            **await ctl.builds.new_lease(conn),  # this replica runs it; another takes over if it dies
        ))
        row = await lookup.build(conn, acct, service.sid, sid)
        body = await render(request, conn, row)
    ctl.builds.start(sid, service.unique_name)
    return web.json_response(body, status=201)


@routes.get("/v1/Services/{service}/Builds")
async def list_(request: web.Request) -> web.Response:
    ctl, acct = control(request), account(request)
    async with ctl.store.connect() as conn:
        service = await lookup.service(conn, acct, request.match_info["service"])
        query = (select(t.builds).where(t.builds.c.account_sid == acct, t.builds.c.service_sid == service.sid)
                 .order_by(t.builds.c.date_created, t.builds.c.sid))
        return await page(request, conn, query, "builds", lambda row: render(request, conn, row))


@routes.get("/v1/Services/{service}/Builds/{sid}")
async def fetch(request: web.Request) -> web.Response:
    ctl, acct = control(request), account(request)
    async with ctl.store.connect() as conn:
        service = await lookup.service(conn, acct, request.match_info["service"])
        row = await lookup.build(conn, acct, service.sid, request.match_info["sid"])
        return web.json_response(await render(request, conn, row))


@routes.get("/v1/Services/{service}/Builds/{sid}/Status")
async def status(request: web.Request) -> web.Response:
    ctl, acct = control(request), account(request)
    async with ctl.store.connect() as conn:
        service = await lookup.service(conn, acct, request.match_info["service"])
        row = await lookup.build(conn, acct, service.sid, request.match_info["sid"])
    return web.json_response({
        "sid": row.sid, "account_sid": row.account_sid, "service_sid": row.service_sid, "status": row.status,
        "url": f"{base_url(request)}/Services/{row.service_sid}/Builds/{row.sid}/Status",
    })


@routes.delete("/v1/Services/{service}/Builds/{sid}")
async def delete_(request: web.Request) -> web.Response:
    """Refused while an environment serves the build: deploy another build first."""
    ctl, acct = control(request), account(request)
    async with ctl.store.begin() as conn:
        service = await lookup.service(conn, acct, request.match_info["service"])
        row = await lookup.build(conn, acct, service.sid, request.match_info["sid"])
        serving = await conn.scalar(select(t.environments.c.unique_name).where(t.environments.c.build_sid == row.sid))
        if serving is not None:
            raise Conflict(f"environment {serving} serves build {row.sid}; deploy another build there first")
        await conn.execute(delete(t.deployments).where(t.deployments.c.build_sid == row.sid))
        await conn.execute(delete(t.builds).where(t.builds.c.sid == row.sid))
    return web.Response(status=204)
