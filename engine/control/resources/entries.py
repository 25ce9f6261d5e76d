"""Functions and Assets share one shape (a named slot for versions); this builds either's routes."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from sqlalchemy import Row, delete, insert, select, update

from engine.control import lookup
from engine.control import store as t
from engine.control.api import account, control
from engine.control.errors import Conflict
from engine.control.shapes import base_url, iso, new_sid, page, required

#: kind → (path segment, SID prefix, list key, versions link key)
KINDS = {
    "function": ("Functions", "functions", "function_versions"),
    "asset": ("Assets", "assets", "asset_versions"),
}


def render(request: web.Request, row: Row[Any]) -> dict[str, Any]:
    segment, _key, versions_key = KINDS[row.kind]
    url = f"{base_url(request)}/Services/{row.service_sid}/{segment}/{row.sid}"
    return {
        "sid": row.sid, "account_sid": row.account_sid, "service_sid": row.service_sid,
        "friendly_name": row.friendly_name, "date_created": iso(row.date_created),
        "date_updated": iso(row.date_updated), "url": url, "links": {versions_key: f"{url}/Versions"},
    }


def make_routes(kind: str) -> web.RouteTableDef:
    segment, list_key, _versions = KINDS[kind]
    routes = web.RouteTableDef()
    prefix = f"/v1/Services/{{service}}/{segment}"

    @routes.post(prefix)
    async def create(request: web.Request) -> web.Response:
        form = await request.post()
        friendly = required(form, "FriendlyName")
        ctl, acct, when = control(request), account(request), t.now()
        async with ctl.store.begin() as conn:
            service = await lookup.service(conn, acct, request.match_info["service"])
            sid = new_sid("ZH")
            await conn.execute(insert(t.entries).values(
                sid=sid, account_sid=acct, service_sid=service.sid, kind=kind, friendly_name=friendly,
                date_created=when, date_updated=when,
            ))
            row = await lookup.entry(conn, acct, service.sid, kind, sid)
        return web.json_response(render(request, row), status=201)

    @routes.get(prefix)
    async def list_(request: web.Request) -> web.Response:
        ctl, acct = control(request), account(request)
        async with ctl.store.connect() as conn:
            service = await lookup.service(conn, acct, request.match_info["service"])
            query = (select(t.entries).where(t.entries.c.account_sid == acct, t.entries.c.service_sid == service.sid,
                                             t.entries.c.kind == kind)
                     .order_by(t.entries.c.date_created, t.entries.c.sid))
            return await page(request, conn, query, list_key, lambda row: render(request, row))

    @routes.get(prefix + "/{sid}")
    async def fetch(request: web.Request) -> web.Response:
        ctl, acct = control(request), account(request)
        async with ctl.store.connect() as conn:
            service = await lookup.service(conn, acct, request.match_info["service"])
            row = await lookup.entry(conn, acct, service.sid, kind, request.match_info["sid"])
        return web.json_response(render(request, row))

    @routes.post(prefix + "/{sid}")
    async def update_(request: web.Request) -> web.Response:
        form = await request.post()
        friendly = required(form, "FriendlyName")
        ctl, acct = control(request), account(request)
        async with ctl.store.begin() as conn:
            service = await lookup.service(conn, acct, request.match_info["service"])
            row = await lookup.entry(conn, acct, service.sid, kind, request.match_info["sid"])
            await conn.execute(update(t.entries).where(t.entries.c.sid == row.sid).values(friendly_name=friendly, date_updated=t.now()))
            row = await lookup.entry(conn, acct, service.sid, kind, row.sid)
        return web.json_response(render(request, row))

    @routes.delete(prefix + "/{sid}")
    async def delete_(request: web.Request) -> web.Response:
        """Refused while a build holds one of its versions: builds are immutable and must stay rebuildable."""
        ctl, acct = control(request), account(request)
        async with ctl.store.begin() as conn:
            service = await lookup.service(conn, acct, request.match_info["service"])
            row = await lookup.entry(conn, acct, service.sid, kind, request.match_info["sid"])
            mine = set((await conn.scalars(select(t.versions.c.sid).where(t.versions.c.entry_sid == row.sid))).all())
            column = t.builds.c.function_versions if kind == "function" else t.builds.c.asset_versions
            for build_sid, held in (await conn.execute(select(t.builds.c.sid, column).where(t.builds.c.service_sid == service.sid))).all():
                if mine & set(json.loads(held)):
                    raise Conflict(f"{kind} {row.sid} has versions in build {build_sid}; delete the build first")
            await conn.execute(delete(t.versions).where(t.versions.c.entry_sid == row.sid))
            await conn.execute(delete(t.entries).where(t.entries.c.sid == row.sid))
        return web.Response(status=204)

    return routes
