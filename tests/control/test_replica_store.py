"""The store side of several replicas, on a real PostgreSQL server, without engines: announcements
are delivered at commit (never for a rolled-back change), an expired build lease is claimed by
exactly one replica, a live one by none, and a replica that lost its lease cannot record a result.
And the other side: one engine on its own SQLite store resumes its builds at once."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import httpx
import pytest

from engine.config import load_settings
from engine.control import leases
from engine.control import store as t
from engine.control.buildlock import BuildLocks, lock_key
from engine.control.watch import CHANNEL, announce, connect_kwargs
from engine.errors import ConfigError
from tests.conftest import EngineLauncher
from tests.control.conftest import make_service, ok, start_control_engine, upload, wait_build
from tests.control.test_replicas import db_upgrade


def test_a_dedicated_connection_gets_what_sqlalchemy_gives_asyncpg() -> None:
    url = "postgresql+asyncpg://fe:s%40cret@db.example:5433/engine?ssl=require&prepared_statement_cache_size=0"
    assert connect_kwargs(url) == {"user": "fe", "password": "s@cret", "host": "db.example", "port": 5433,
                                   "database": "engine", "ssl": "require"}


def test_lock_keys_are_signed_64_bit_and_differ_by_content() -> None:
    keys = {lock_key(f"{n:064x}") for n in range(1000)}
    assert len(keys) == 1000 and all(-(2**63) <= k < 2**63 for k in keys)


def test_a_lease_renewed_no_more_often_than_it_lasts_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="build_lease_renew_s.*shorter than build_lease_s"):
        load_settings({"build_lease_s": 10, "build_lease_renew_s": 10}, environ={})


async def _listen(url: str) -> tuple[asyncpg.Connection, asyncio.Queue[str]]:
    heard: asyncio.Queue[str] = asyncio.Queue()
    conn = await asyncpg.connect(url)
    await conn.add_listener(CHANNEL, lambda _c, _p, _ch, payload: heard.put_nowait(payload))
    return conn, heard


def test_an_announcement_arrives_at_commit_and_never_for_a_rolled_back_change(pg_url: str) -> None:
    db_upgrade(pg_url)

    async def run() -> None:
        listener, heard = await _listen(pg_url)
        store = t.Store(t.normalise_url(pg_url))
        try:
            async with store.begin() as conn:
                await announce(conn, "ZE" + "1" * 32)
                await asyncio.sleep(0.3)
                assert heard.empty()  # not before the change is visible
            assert await asyncio.wait_for(heard.get(), 5) == "ZE" + "1" * 32
            with pytest.raises(RuntimeError):
                async with store.begin() as conn:
                    await announce(conn)
                    raise RuntimeError("the change fails")
            await asyncio.sleep(0.5)
            assert heard.empty()
        finally:
            await listener.close()
            await store.close()

    asyncio.run(run())


async def _a_building_build(store: t.Store, lease_expires_in_s: float | None) -> str:
    when = t.now()
    async with store.begin() as conn:
        await conn.execute(t.accounts.insert().values(sid="AC" + "1" * 32, friendly_name="a", token_hash="x",
                                                      date_created=when, date_updated=when))
        await conn.execute(t.services.insert().values(sid="ZS" + "1" * 32, account_sid="AC" + "1" * 32, unique_name="s",
                                                      friendly_name="s", include_credentials=True, ui_editable=False,
                                                      date_created=when, date_updated=when))
        lease = None if lease_expires_in_s is None else await leases.db_now(conn) + timedelta(seconds=lease_expires_in_s)
        await conn.execute(t.builds.insert().values(
            sid="ZB" + "1" * 32, account_sid="AC" + "1" * 32, service_sid="ZS" + "1" * 32, status="building",
            runtime="node22", dependencies="[]", function_versions="[]", asset_versions="[]", size_bytes=0,
            date_created=when, date_updated=when, owner="dead-replica", lease_expires_at=lease,
        ))
    return "ZB" + "1" * 32


async def _claim(store: t.Store, sid: str, owner: str) -> bool:
    async with store.begin() as conn:
        return await leases.claim(conn, sid, owner, 30)


def test_an_expired_lease_is_claimed_by_exactly_one_of_many_replicas_at_once(pg_url: str) -> None:
    db_upgrade(pg_url)

    async def run() -> None:
        stores = [t.Store(t.normalise_url(pg_url)) for _ in range(4)]
        try:
            sid = await _a_building_build(stores[0], -1)
            async with stores[0].connect() as conn:
                assert [row[0] for row in await leases.expired(conn)] == [sid]
            won = await asyncio.gather(*(_claim(s, sid, f"replica-{n}") for n, s in enumerate(stores)))
            assert sorted(won) == [False, False, False, True]
            winner = f"replica-{won.index(True)}"
            async with stores[0].connect() as conn:
                assert await leases.expired(conn) == []  # the new lease is live
            async with stores[0].begin() as conn:  # the dead replica comes back: its result is not recorded
                assert not await leases.finish(conn, sid, "dead-replica", "completed", None)
                assert await leases.renew(conn, [sid], "dead-replica", 30) == {sid}
            async with stores[0].begin() as conn:
                assert await leases.finish(conn, sid, winner, "completed", None)
        finally:
            for s in stores:
                await s.close()

    asyncio.run(run())


def test_a_live_lease_cannot_be_claimed(pg_url: str) -> None:
    db_upgrade(pg_url)

    async def run() -> None:
        store = t.Store(t.normalise_url(pg_url))
        try:
            sid = await _a_building_build(store, 30)
            assert not await _claim(store, sid, "thief")
            async with store.connect() as conn:
                assert await leases.expired(conn) == []
                assert [row[0] for row in await leases.expired(conn, any_lease=True)] == [sid]
        finally:
            await store.close()

    asyncio.run(run())


def test_the_build_lock_excludes_a_second_holder_until_the_first_lets_go(pg_url: str) -> None:
    db_upgrade(pg_url)

    async def run() -> None:
        url = t.normalise_url(pg_url)
        first, second = BuildLocks(url, "first"), BuildLocks(url, "second")
        order: list[str] = []

        async def hold(locks: BuildLocks, name: str, for_s: float) -> None:
            async with locks.hold("content-x"):
                order.append(f"{name} in")
                await asyncio.sleep(for_s)
                order.append(f"{name} out")

        task = asyncio.create_task(hold(first, "first", 1.0))
        await asyncio.sleep(0.3)
        await hold(second, "second", 0)
        await task
        assert order == ["first in", "first out", "second in", "second out"]
        async with first.hold("content-y"), second.hold("content-z"):  # other content: no waiting
            pass

    asyncio.run(run())


def test_an_engine_alone_on_its_sqlite_store_resumes_a_build_left_building_whatever_its_lease(
    engine_factory: EngineLauncher, tmp_path: Path,
) -> None:
    """The embedded store has one engine: at start it runs again every build left `building` (here
    with a lease an hour from now, by an engine id that is gone) instead of waiting for the lease."""
    data = tmp_path / "data"
    control = start_control_engine(engine_factory, data)
    account = control.account("team-a")
    with account.client() as c:
        service = make_service(c, "resumed")["sid"]
        fn = upload(c, service, "function", "/hello", b"exports.handler = (c, e, cb) => cb(null, 'hi');", "hello.js")
        sid = ok(c.post(f"/Services/{service}/Builds", data={"FunctionVersions": fn["sid"], "Runtime": "node22"}), 201)["sid"]
        assert wait_build(c, service, sid)["status"] == "completed"
    control.engine.stop()
    with sqlite3.connect(data / "engine.db") as db:
        db.execute("UPDATE builds SET status = 'building', owner = 'gone', lease_expires_at = ? WHERE sid = ?",
                   ((datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S.%f"), sid))
    control = start_control_engine(engine_factory, data)
    with httpx.Client(base_url=control.api, auth=account.auth, timeout=60) as c:
        assert wait_build(c, service, sid, timeout=60)["status"] == "completed"
    with sqlite3.connect(data / "engine.db") as db:
        assert db.execute("SELECT lease_expires_at FROM builds WHERE sid = ?", (sid,)).fetchone() == (None,)
