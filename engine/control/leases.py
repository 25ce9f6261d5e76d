"""Build leases: a build being built names the replica running it (`owner`, its engine id) and holds
a lease (`lease_expires_at`) that replica renews while it works on it. A lease that ran out means
the replica is gone (killed, partitioned): any replica may claim the build, and exactly one does,
because the claim is one conditional UPDATE.

Times come from the database's clock on PostgreSQL (one clock for every replica, whatever their
own say); the embedded SQLite store serves one engine, whose clock is the only one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.control import store as t


async def db_now(conn: AsyncConnection) -> datetime:
    """Now, by the store's clock."""
    if conn.dialect.name == "postgresql":
        return await conn.scalar(select(func.now()))
    return t.now()


async def new_lease(conn: AsyncConnection, owner: str, lease_s: float) -> dict[str, Any]:
    """The columns of a build this replica starts now (written with the build's row)."""
    return {"owner": owner, "lease_expires_at": await db_now(conn) + timedelta(seconds=lease_s)}


def _expired(now: datetime) -> Any:
    # NULL: a build from before leases existed, or one whose replica stopped and let it go.
    return or_(t.builds.c.lease_expires_at.is_(None), t.builds.c.lease_expires_at < now)


async def expired(conn: AsyncConnection, *, any_lease: bool = False) -> list[tuple[str, str, str | None]]:
    """Builds still `building` whose lease ran out (all of them with `any_lease`): (sid, service
    unique name, owner)."""
    query = (select(t.builds.c.sid, t.services.c.unique_name, t.builds.c.owner)
             .join(t.services, t.services.c.sid == t.builds.c.service_sid)
             .where(t.builds.c.status == "building"))
    if not any_lease:
        query = query.where(_expired(await db_now(conn)))
    return [(sid, name, owner) for sid, name, owner in (await conn.execute(query)).all()]


async def claim(conn: AsyncConnection, build_sid: str, owner: str, lease_s: float, *, any_lease: bool = False) -> bool:
    """Take the build over if it is still `building` and its lease ran out; True if this replica got it."""
    now = await db_now(conn)
    query = update(t.builds).where(t.builds.c.sid == build_sid, t.builds.c.status == "building")
    if not any_lease:
        query = query.where(_expired(now))
    done = await conn.execute(query.values(owner=owner, lease_expires_at=now + timedelta(seconds=lease_s),
                                           date_updated=now))
    return done.rowcount == 1


async def renew(conn: AsyncConnection, build_sids: list[str], owner: str, lease_s: float) -> set[str]:
    """Extend this replica's leases on `build_sids`; returns those it no longer holds (taken over
    after its lease ran out, finished elsewhere, or deleted)."""
    if not build_sids:
        return set()
    now = await db_now(conn)
    await conn.execute(update(t.builds).where(
        t.builds.c.sid.in_(build_sids), t.builds.c.owner == owner, t.builds.c.status == "building",
    ).values(lease_expires_at=now + timedelta(seconds=lease_s)))
    held = set((await conn.execute(select(t.builds.c.sid).where(
        t.builds.c.sid.in_(build_sids), t.builds.c.owner == owner, t.builds.c.status == "building",
    ))).scalars())
    return set(build_sids) - held


async def release(conn: AsyncConnection, build_sids: list[str], owner: str) -> None:
    """This replica stops (cleanly) before finishing these builds: another may take them at once."""
    if build_sids:
        await conn.execute(update(t.builds).where(
            t.builds.c.sid.in_(build_sids), t.builds.c.owner == owner, t.builds.c.status == "building",
        ).values(lease_expires_at=None))


async def finish(conn: AsyncConnection, build_sid: str, owner: str, status: str, error: str | None) -> bool:
    """Record the outcome if this replica still holds the build; False if another took it over."""
    done = await conn.execute(update(t.builds).where(
        t.builds.c.sid == build_sid, t.builds.c.owner == owner, t.builds.c.status == "building",
    ).values(status=status, error=error, lease_expires_at=None, date_updated=t.now()))
    return done.rowcount == 1
