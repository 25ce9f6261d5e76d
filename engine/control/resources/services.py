"""Services: `/v1/Services` (UniqueName or SID accepted in the path)."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from sqlalchemy import Row, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from engine.control import lookup
from engine.control.accounts import quota
from engine.control import store as t
from engine.control.api import account, control
from engine.control.errors import Conflict, TooMany
from pydantic import Field, field_validator

from engine.control.shapes import FormModel, base_url, boolean, iso, new_sid, optional, page, parse_form
from engine.control.watch import announce

routes = web.RouteTableDef()

# Becomes part of a hostname (`<unique_name>-<suffix>.<domain>`), so DNS-label characters only.
_UNIQUE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,48}[a-z0-9])?$")


def render(request: web.Request, row: Row[Any]) -> dict[str, Any]:
    url = f"{base_url(request)}/Services/{row.sid}"
    return {
        "sid": row.sid, "account_sid": row.account_sid, "friendly_name": row.friendly_name,
        "unique_name": row.unique_name, "include_credentials": row.include_credentials,
        "ui_editable": row.ui_editable, "domain_base": row.unique_name,
        "date_created": iso(row.date_created), "date_updated": iso(row.date_updated), "url": url,
        "links": {k: f"{url}/{k.capitalize()}" for k in ("environments", "functions", "assets", "builds")},
    }


def _unique_name_rule(value: str) -> str:
    return f"UniqueName {value!r} must be 1-50 letters, digits and '-' (not at either end): it becomes part of a domain name"


class ServiceCreate(FormModel):
    """`POST /v1/Services`."""

    unique_name: str = Field(alias="UniqueName", max_length=50)
    friendly_name: str = Field(alias="FriendlyName", max_length=255)
    include_credentials: bool = Field(default=True, alias="IncludeCredentials")
    ui_editable: bool = Field(default=False, alias="UiEditable")

    @field_validator("unique_name")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not _UNIQUE_NAME.match(value.lower()):
            raise ValueError(_unique_name_rule(value))
        return value.lower()

    @field_validator("include_credentials", "ui_editable", mode="before")
    @classmethod
    def _true_or_false(cls, value: str) -> bool:
        lowered = value.lower()
        if lowered in ("true", "1", "false", "0"):
            return lowered in ("true", "1")
        raise ValueError(f"must be true or false (got {value!r})")


@routes.post("/v1/Services")
async def create(request: web.Request) -> web.Response:
    payload = parse_form(ServiceCreate, await request.post())
    name, friendly = payload.unique_name, payload.friendly_name
    include_credentials, ui_editable = payload.include_credentials, payload.ui_editable
    ctl, acct, when = control(request), account(request), t.now()
    async with ctl.store.begin() as conn:
        count = await conn.scalar(select(func.count()).select_from(t.services).where(t.services.c.account_sid == acct))
        if count >= await quota(conn, acct, "max_services", ctl.settings):
            raise TooMany(f"this account has {count} services, the most its max_services_per_account quota allows; delete one first")
        sid = new_sid("ZS")
        try:
            await conn.execute(insert(t.services).values(
                sid=sid, account_sid=acct, unique_name=name, friendly_name=friendly,
                include_credentials=include_credentials, ui_editable=ui_editable, date_created=when, date_updated=when,
            ))
        except IntegrityError:
            raise Conflict(f"a service with UniqueName {name!r} already exists in this account") from None
        row = await lookup.service(conn, acct, sid)
    return web.json_response(render(request, row), status=201)


@routes.get("/v1/Services")
async def list_(request: web.Request) -> web.Response:
    ctl, acct = control(request), account(request)
    query = select(t.services).where(t.services.c.account_sid == acct).order_by(t.services.c.date_created, t.services.c.sid)
    async with ctl.store.connect() as conn:
        return await page(request, conn, query, "services", lambda row: render(request, row))


@routes.get("/v1/Services/{sid}")
async def fetch(request: web.Request) -> web.Response:
    ctl = control(request)
    async with ctl.store.connect() as conn:
        row = await lookup.service(conn, account(request), request.match_info["sid"])
    return web.json_response(render(request, row))


@routes.post("/v1/Services/{sid}")
async def update_(request: web.Request) -> web.Response:
    form = await request.post()
    ctl, acct = control(request), account(request)
    async with ctl.store.begin() as conn:
        row = await lookup.service(conn, acct, request.match_info["sid"])
        values: dict[str, Any] = {
            "friendly_name": optional(form, "FriendlyName") or row.friendly_name,
            "include_credentials": boolean(form, "IncludeCredentials", row.include_credentials),
            "ui_editable": boolean(form, "UiEditable", row.ui_editable),
            "date_updated": t.now(),
        }
        await conn.execute(update(t.services).where(t.services.c.sid == row.sid).values(**values))
        row = await lookup.service(conn, acct, row.sid)
    return web.json_response(render(request, row))


@routes.delete("/v1/Services/{sid}")
async def delete_(request: web.Request) -> web.Response:
    """Stops every environment's traffic and workers, then removes the service and all it owns."""
    ctl, acct = control(request), account(request)
    async with ctl.store.begin() as conn:
        row = await lookup.service(conn, acct, request.match_info["sid"])
        env_sids = (await conn.scalars(select(t.environments.c.sid).where(t.environments.c.service_sid == row.sid))).all()
        for table in (t.logs, t.deployments, t.variables, t.versions, t.builds, t.entries, t.environments):
            await conn.execute(delete(table).where(table.c.service_sid == row.sid))
        await conn.execute(delete(t.services).where(t.services.c.sid == row.sid))
        for env_sid in env_sids:
            await announce(conn, env_sid)
    for env_sid in env_sids:
        await ctl.converger.withdraw(env_sid)
    return web.Response(status=204)
