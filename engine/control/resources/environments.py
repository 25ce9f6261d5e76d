"""Environments: `/v1/Services/{ZS}/Environments`; each has a domain, routed by Host."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from sqlalchemy import Row, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from engine.control import lookup
from engine.control.accounts import quota
from engine.control import store as t
from engine.control.api import account, control
from engine.control.converge import service_label
from engine.control.errors import Conflict, TooMany
from pydantic import Field, field_validator

from engine.control.shapes import FormModel, base_url, iso, new_sid, page, parse_form
from engine.control.watch import announce

routes = web.RouteTableDef()

_SUFFIX = re.compile(r"^[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?$")


def render(request: web.Request, row: Row[Any]) -> dict[str, Any]:
    url = f"{base_url(request)}/Services/{row.service_sid}/Environments/{row.sid}"
    return {
        "sid": row.sid, "account_sid": row.account_sid, "service_sid": row.service_sid, "build_sid": row.build_sid,
        "unique_name": row.unique_name, "domain_suffix": row.domain_suffix, "domain_name": row.domain_name,
        "date_created": iso(row.date_created), "date_updated": iso(row.date_updated), "url": url,
        "links": {k: f"{url}/{k.capitalize()}" for k in ("variables", "deployments", "logs")},
    }


def domain_name(service_unique_name: str, suffix: str | None, domain: str) -> str:
    """`<service>-<suffix>.<domain>`, or `<service>.<domain>` with no suffix."""
    label = f"{service_unique_name}-{suffix}" if suffix else service_unique_name
    return f"{label}.{domain.strip('.').lower()}"


class EnvironmentCreate(FormModel):
    """`POST /v1/Services/{ServiceSid}/Environments`."""

    unique_name: str = Field(alias="UniqueName", max_length=100)
    domain_suffix: str | None = Field(default=None, alias="DomainSuffix", max_length=16)

    @field_validator("domain_suffix")
    @classmethod
    def _dns_label(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not _SUFFIX.match(value):
            raise ValueError(f"DomainSuffix {value!r} must be 1-16 lowercase letters, digits and '-' (not at either end)")
        return value


def folder_clash(ctl: Any, domain: str, label: str) -> str | None:
    """The engine's folder service (described) at this domain or with this service label, if any."""
    deployments = getattr(getattr(ctl.converger, "engine", None), "deployments", None)
    return deployments.folder_clash(domain, label) if deployments is not None else None


@routes.post("/v1/Services/{service}/Environments")
async def create(request: web.Request) -> web.Response:
    payload = parse_form(EnvironmentCreate, await request.post())
    unique_name, suffix = payload.unique_name, payload.domain_suffix
    ctl, acct, when = control(request), account(request), t.now()
    async with ctl.store.begin() as conn:
        service = await lookup.service(conn, acct, request.match_info["service"])
        count = await conn.scalar(select(func.count()).select_from(t.environments).where(t.environments.c.service_sid == service.sid))
        if count >= await quota(conn, acct, "max_environments_per_service", ctl.settings):
            raise TooMany(f"service {service.unique_name} has {count} environments, the most max_environments_per_service allows")
        domain = domain_name(service.unique_name, suffix, ctl.settings.domain)
        folder = folder_clash(ctl, domain, service_label(service.unique_name, unique_name))
        if folder is not None:
            raise Conflict(f"the environment's domain {domain} or name "
                           f"{service_label(service.unique_name, unique_name)!r} clashes with {folder} this engine "
                           "serves; pick another DomainSuffix or UniqueName")
        taken = (await conn.execute(select(t.environments.c.service_sid, t.environments.c.unique_name).where(
            (t.environments.c.domain_name == domain)
            | ((t.environments.c.service_sid == service.sid) & (t.environments.c.unique_name == unique_name))
        ))).first()
        if taken is not None:
            what = "UniqueName" if taken.service_sid == service.sid and taken.unique_name == unique_name else "domain"
            raise Conflict(f"an environment with this {what} already exists ({domain if what == 'domain' else unique_name}); pick another "
                           + ("DomainSuffix" if what == "domain" else "UniqueName"))
        sid = new_sid("ZE")
        try:
            await conn.execute(insert(t.environments).values(
                sid=sid, account_sid=acct, service_sid=service.sid, unique_name=unique_name, domain_suffix=suffix,
                domain_name=domain, build_sid=None, date_created=when, date_updated=when,
            ))
        except IntegrityError:
            raise Conflict(f"the domain {domain} or UniqueName {unique_name!r} was taken meanwhile; pick another") from None
        row = await lookup.environment(conn, acct, service.sid, sid)
    return web.json_response(render(request, row), status=201)


@routes.get("/v1/Services/{service}/Environments")
async def list_(request: web.Request) -> web.Response:
    ctl, acct = control(request), account(request)
    async with ctl.store.connect() as conn:
        service = await lookup.service(conn, acct, request.match_info["service"])
        query = (select(t.environments).where(t.environments.c.account_sid == acct, t.environments.c.service_sid == service.sid)
                 .order_by(t.environments.c.date_created, t.environments.c.sid))
        return await page(request, conn, query, "environments", lambda row: render(request, row))


@routes.get("/v1/Services/{service}/Environments/{sid}")
async def fetch(request: web.Request) -> web.Response:
    ctl, acct = control(request), account(request)
    async with ctl.store.connect() as conn:
        service = await lookup.service(conn, acct, request.match_info["service"])
        row = await lookup.environment(conn, acct, service.sid, request.match_info["sid"])
    return web.json_response(render(request, row))


@routes.delete("/v1/Services/{service}/Environments/{sid}")
async def delete_(request: web.Request) -> web.Response:
    """Stops the environment's traffic (404) and removes its workers."""
    ctl, acct = control(request), account(request)
    async with ctl.store.begin() as conn:
        service = await lookup.service(conn, acct, request.match_info["service"])
        row = await lookup.environment(conn, acct, service.sid, request.match_info["sid"])
        for table in (t.logs, t.deployments, t.variables):
            await conn.execute(delete(table).where(table.c.environment_sid == row.sid))
        await conn.execute(delete(t.environments).where(t.environments.c.sid == row.sid))
        await announce(conn, row.sid)
    await ctl.converger.withdraw(row.sid)
    return web.Response(status=204)
