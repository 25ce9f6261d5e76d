"""Variables: `/v1/Services/{ZS}/Environments/{ZE}/Variables`; a change rolls the environment's workers."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from sqlalchemy import Row, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from engine.control import lookup
from engine.control import store as t
from engine.control.api import account, control
from engine.control.errors import BadRequest, Conflict, NotFound
from engine.control.shapes import base_url, iso, new_sid, optional, page, required
from engine.control.watch import announce

routes = web.RouteTableDef()

# Variables become a process environment: a name the shell would accept.
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
#: A variable's value at most (bytes of UTF-8): the hosted API's own bound on one value.
MAX_VALUE_BYTES = 450
_PREFIX = "/v1/Services/{service}/Environments/{environment}/Variables"


def render(request: web.Request, row: Row[Any]) -> dict[str, Any]:
    return {
        "sid": row.sid, "account_sid": row.account_sid, "service_sid": row.service_sid,
        "environment_sid": row.environment_sid, "key": row.key, "value": row.value,
        "date_created": iso(row.date_created), "date_updated": iso(row.date_updated),
        "url": f"{base_url(request)}/Services/{row.service_sid}/Environments/{row.environment_sid}/Variables/{row.sid}",
    }


def _key(value: str) -> str:
    if not _KEY.match(value):
        raise BadRequest(f"Key {value!r} must be letters, digits and '_', not starting with a digit (at most 128)")
    return value


def _value(value: str) -> str:
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise BadRequest(f"Value of more than {MAX_VALUE_BYTES} bytes; keep larger data in an asset")
    return value


async def _parents(conn: Any, request: web.Request) -> tuple[Row[Any], Row[Any]]:
    acct = account(request)
    service = await lookup.service(conn, acct, request.match_info["service"])
    environment = await lookup.environment(conn, acct, service.sid, request.match_info["environment"])
    return service, environment


async def _row(conn: Any, request: web.Request, environment_sid: str) -> Row[Any]:
    row = (await conn.execute(select(t.variables).where(
        t.variables.c.account_sid == account(request), t.variables.c.environment_sid == environment_sid,
        t.variables.c.sid == request.match_info["sid"],
    ))).first()
    if row is None:
        raise NotFound(f"variable {request.match_info['sid']} not found in environment {environment_sid}")
    return row


@routes.post(_PREFIX)
async def create(request: web.Request) -> web.Response:
    form = await request.post()
    key = _key(required(form, "Key", 128))
    value = _value(optional(form, "Value", 4096) or "")
    if form.get("Value") is None:
        raise BadRequest("missing required parameter Value")
    ctl, when = control(request), t.now()
    async with ctl.store.begin() as conn:
        service, environment = await _parents(conn, request)
        sid = new_sid("ZV")
        try:
            await conn.execute(insert(t.variables).values(
                sid=sid, account_sid=account(request), service_sid=service.sid, environment_sid=environment.sid,
                key=key, value=value, date_created=when, date_updated=when,
            ))
        except IntegrityError:
            raise Conflict(f"variable {key} already exists in this environment; update it instead") from None
        row = (await conn.execute(select(t.variables).where(t.variables.c.sid == sid))).first()
        await announce(conn, environment.sid)
    await ctl.converger.environment_changed(environment.sid)
    return web.json_response(render(request, row), status=201)


@routes.get(_PREFIX)
async def list_(request: web.Request) -> web.Response:
    ctl = control(request)
    async with ctl.store.connect() as conn:
        _service, environment = await _parents(conn, request)
        query = (select(t.variables).where(t.variables.c.account_sid == account(request), t.variables.c.environment_sid == environment.sid)
                 .order_by(t.variables.c.date_created, t.variables.c.sid))
        return await page(request, conn, query, "variables", lambda row: render(request, row))


@routes.get(_PREFIX + "/{sid}")
async def fetch(request: web.Request) -> web.Response:
    ctl = control(request)
    async with ctl.store.connect() as conn:
        _service, environment = await _parents(conn, request)
        row = await _row(conn, request, environment.sid)
    return web.json_response(render(request, row))


@routes.post(_PREFIX + "/{sid}")
async def update_(request: web.Request) -> web.Response:
    form = await request.post()
    new_key = optional(form, "Key", 128)
    new_value = optional(form, "Value", 4096)
    ctl = control(request)
    async with ctl.store.begin() as conn:
        _service, environment = await _parents(conn, request)
        row = await _row(conn, request, environment.sid)
        values = {
            "key": _key(new_key) if new_key is not None else row.key,
            "value": _value(new_value) if new_value is not None else row.value,
            "date_updated": t.now(),
        }
        try:
            await conn.execute(update(t.variables).where(t.variables.c.sid == row.sid).values(**values))
        except IntegrityError:
            raise Conflict(f"variable {values['key']} already exists in this environment") from None
        row = await _row(conn, request, environment.sid)
        await announce(conn, environment.sid)
    await ctl.converger.environment_changed(environment.sid)
    return web.json_response(render(request, row))


@routes.delete(_PREFIX + "/{sid}")
async def delete_(request: web.Request) -> web.Response:
    ctl = control(request)
    async with ctl.store.begin() as conn:
        _service, environment = await _parents(conn, request)
        row = await _row(conn, request, environment.sid)
        await conn.execute(delete(t.variables).where(t.variables.c.sid == row.sid))
        await announce(conn, environment.sid)
    await ctl.converger.environment_changed(environment.sid)
    return web.Response(status=204)
