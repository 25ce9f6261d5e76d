"""Logs: `/v1/Services/{ZS}/Environments/{ZE}/Logs` (FunctionSid, StartDate, EndDate), newest last."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from aiohttp import web
from sqlalchemy import Row, select

from engine.control import lookup
from engine.control import store as t
from engine.control.api import account, control
from engine.control.errors import BadRequest, NotFound
from engine.control.shapes import base_url, iso, page

routes = web.RouteTableDef()
_PREFIX = "/v1/Services/{service}/Environments/{environment}/Logs"


def render(request: web.Request, row: Row[Any]) -> dict[str, Any]:
    return {
        "sid": row.sid, "account_sid": row.account_sid, "service_sid": row.service_sid,
        "environment_sid": row.environment_sid, "build_sid": row.build_sid, "deployment_sid": row.deployment_sid,
        "function_sid": row.function_sid, "request_sid": row.request_sid, "level": row.level.upper(),
        "message": row.message, "date_created": iso(row.date_created),
        "url": f"{base_url(request)}/Services/{row.service_sid}/Environments/{row.environment_sid}/Logs/{row.sid}",
    }


def _date(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"parameter {name} must be an ISO 8601 date and time (got {raw!r})") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


async def _parents(conn: Any, request: web.Request) -> tuple[Row[Any], Row[Any]]:
    acct = account(request)
    service = await lookup.service(conn, acct, request.match_info["service"])
    return service, await lookup.environment(conn, acct, service.sid, request.match_info["environment"])


@routes.get(_PREFIX)
async def list_(request: web.Request) -> web.Response:
    start, end = _date(request, "StartDate"), _date(request, "EndDate")
    function_sid = request.query.get("FunctionSid")
    ctl = control(request)
    async with ctl.store.connect() as conn:
        _service, environment = await _parents(conn, request)
        query = select(t.logs).where(t.logs.c.account_sid == account(request), t.logs.c.environment_sid == environment.sid)
        if start is not None:
            query = query.where(t.logs.c.date_created >= start)
        if end is not None:
            query = query.where(t.logs.c.date_created <= end)
        if function_sid:
            query = query.where(t.logs.c.function_sid == function_sid)
        keep = {k: v for k, v in request.query.items() if k in ("StartDate", "EndDate", "FunctionSid")}
        return await page(request, conn, query.order_by(t.logs.c.seq), "logs", lambda row: render(request, row), keep)


@routes.get(_PREFIX + "/{sid}")
async def fetch(request: web.Request) -> web.Response:
    ctl = control(request)
    async with ctl.store.connect() as conn:
        _service, environment = await _parents(conn, request)
        row = (await conn.execute(select(t.logs).where(
            t.logs.c.account_sid == account(request), t.logs.c.environment_sid == environment.sid,
            t.logs.c.sid == request.match_info["sid"],
        ))).first()
    if row is None:
        raise NotFound(f"log {request.match_info['sid']} not found in environment {environment.sid}")
    return web.json_response(render(request, row))
