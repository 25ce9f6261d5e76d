"""Finding a parent resource from a path, always within the caller's account (else 404)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.control import store as t
from engine.control.errors import NotFound


async def service(conn: AsyncConnection, account_sid: str, ref: str) -> Row[Any]:
    """A service by SID or UniqueName, as the hosted API accepts either in the path."""
    row = (await conn.execute(select(t.services).where(
        t.services.c.account_sid == account_sid, or_(t.services.c.sid == ref, t.services.c.unique_name == ref),
    ))).first()
    if row is None:
        raise NotFound(f"service {ref} not found")
    return row


async def environment(conn: AsyncConnection, account_sid: str, service_sid: str, ref: str) -> Row[Any]:
    """An environment by SID or UniqueName within its service."""
    row = (await conn.execute(select(t.environments).where(
        t.environments.c.account_sid == account_sid, t.environments.c.service_sid == service_sid,
        or_(t.environments.c.sid == ref, t.environments.c.unique_name == ref),
    ))).first()
    if row is None:
        raise NotFound(f"environment {ref} not found in service {service_sid}")
    return row


async def entry(conn: AsyncConnection, account_sid: str, service_sid: str, kind: str, sid: str) -> Row[Any]:
    row = (await conn.execute(select(t.entries).where(
        t.entries.c.account_sid == account_sid, t.entries.c.service_sid == service_sid,
        t.entries.c.kind == kind, t.entries.c.sid == sid,
    ))).first()
    if row is None:
        raise NotFound(f"{kind} {sid} not found in service {service_sid}")
    return row


async def build(conn: AsyncConnection, account_sid: str, service_sid: str, sid: str) -> Row[Any]:
    row = (await conn.execute(select(t.builds).where(
        t.builds.c.account_sid == account_sid, t.builds.c.service_sid == service_sid, t.builds.c.sid == sid,
    ))).first()
    if row is None:
        raise NotFound(f"build {sid} not found in service {service_sid}")
    return row
