"""The control store itself, on both databases it runs on: the embedded SQLite file and a real
PostgreSQL server (a fresh database per test). Every store operation the control plane uses, the
constraints the API maps to 409, and the places where the two databases differ by nature (NUL in
text, naive datetimes, 32-bit integers, concurrent writers)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from engine.control import accounts as acc
from engine.control import store as t
from engine.control.cli import MAX_QUOTA
from engine.control.logsink import LogSink, Served
from engine.control.shapes import new_sid
from tests.control.stores import store_url  # noqa: F401  (a fixture: SQLite and PostgreSQL)

OWNED = (t.api_keys, t.services, t.environments, t.variables, t.entries, t.versions, t.builds, t.deployments, t.logs)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[t.Store]:
    opened = t.Store(store_url)
    try:
        await opened.prepare(upgrade=True)
        yield opened
    finally:
        await opened.close()


# --- rows, as the resources write them -------------------------------------------------------


async def _account(store: t.Store, name: str = "team-a") -> str:
    async with store.begin() as conn:
        return (await acc.create_account(conn, name)).sid


async def _service(conn, account: str, name: str = "shop") -> str:  # type: ignore[no-untyped-def]
    sid, when = new_sid("ZS"), t.now()
    await conn.execute(insert(t.services).values(sid=sid, account_sid=account, unique_name=name, friendly_name=name,
                                                 include_credentials=True, ui_editable=False, date_created=when, date_updated=when))
    return sid


async def _environment(conn, account: str, service: str, name: str = "dev", domain: str | None = None) -> str:  # type: ignore[no-untyped-def]
    sid, when = new_sid("ZE"), t.now()
    await conn.execute(insert(t.environments).values(
        sid=sid, account_sid=account, service_sid=service, unique_name=name, domain_suffix=name,
        domain_name=domain or f"{sid.lower()}.localhost", build_sid=None, date_created=when, date_updated=when))
    return sid


async def _variable(conn, account: str, service: str, environment: str, key: str = "A", value: str = "1") -> str:  # type: ignore[no-untyped-def]
    sid, when = new_sid("ZV"), t.now()
    await conn.execute(insert(t.variables).values(sid=sid, account_sid=account, service_sid=service, environment_sid=environment,
                                                  key=key, value=value, date_created=when, date_updated=when))
    return sid


async def _everything(store: t.Store, account: str) -> dict[str, str]:
    """One row of every table an account owns; returns their SIDs by kind."""
    made: dict[str, str] = {}
    async with store.begin() as conn:
        made["key"] = (await acc.create_key(conn, account, "ci")).sid
        made["service"] = service = await _service(conn, account)
        made["environment"] = environment = await _environment(conn, account, service)
        made["variable"] = await _variable(conn, account, service, environment)
        when = t.now()
        made["entry"] = entry = new_sid("ZH")
        await conn.execute(insert(t.entries).values(sid=entry, account_sid=account, service_sid=service, kind="function",
                                                    friendly_name="/hi", date_created=when, date_updated=when))
        digest = await t.put_blob(conn, b"exports.handler = (c, e, cb) => cb(null, 'hi');\n")
        made["version"] = version = new_sid("ZN")
        await conn.execute(insert(t.versions).values(
            sid=version, account_sid=account, service_sid=service, entry_sid=entry, kind="function", path="/hi",
            visibility="public", filename="hi.js", content_type="application/javascript", blob_sha256=digest,
            size_bytes=48, date_created=when))
        made["build"] = build = new_sid("ZB")
        await conn.execute(insert(t.builds).values(
            sid=build, account_sid=account, service_sid=service, status="building", runtime="node22",
            dependencies=json.dumps([{"name": "lodash", "version": "4.17.21"}]), function_versions=json.dumps([version]),
            asset_versions="[]", size_bytes=48, error=None, date_created=when, date_updated=when))
        made["deployment"] = deployment = new_sid("ZD")
        await conn.execute(insert(t.deployments).values(sid=deployment, account_sid=account, service_sid=service,
                                                        environment_sid=environment, build_sid=build, date_created=when, date_updated=when))
        made["log"] = log = new_sid("NO")
        await conn.execute(insert(t.logs).values(sid=log, account_sid=account, service_sid=service, environment_sid=environment,
                                                 build_sid=build, level="info", message="hello", date_created=when))
    return made


async def _count(store: t.Store, table, account: str) -> int:  # type: ignore[no-untyped-def]
    async with store.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table).where(table.c.account_sid == account)))


# --- accounts and keys -----------------------------------------------------------------------


async def test_an_account_is_found_by_name_and_sid_and_a_rotated_token_replaces_the_old_one(store: t.Store) -> None:
    auth = acc.Authenticator(cache_s=30)
    async with store.begin() as conn:
        made = await acc.create_account(conn, "team-a")
        assert await acc.find_account(conn, "team-a") == made.sid
        assert await acc.find_account(conn, made.sid) == made.sid
        assert await acc.find_account(conn, "team-b") is None
        assert await auth.account_for(conn, made.sid, made.secret) == made.sid
        rotated = await acc.rotate_token(conn, made.sid)
    async with store.connect() as conn:
        assert await auth.account_for(conn, made.sid, rotated.secret) == made.sid
        assert await auth.account_for(conn, made.sid, made.secret) is None  # cached, yet its hash no longer matches


async def test_an_api_key_authenticates_as_its_account_only(store: t.Store) -> None:
    a, b = await _account(store, "team-a"), await _account(store, "team-b")
    auth = acc.Authenticator(cache_s=30)
    async with store.begin() as conn:
        key = await acc.create_key(conn, a, "ci")
        assert await auth.account_for(conn, key.sid, key.secret) == a
        assert await auth.account_for(conn, key.sid, "0" * 32) is None
        assert b != a


async def test_deleting_an_account_removes_every_row_it_owns_and_no_other_accounts(store: t.Store) -> None:
    doomed, kept = await _account(store, "doomed"), await _account(store, "kept")
    await _everything(store, doomed)
    await _everything(store, kept)
    async with store.begin() as conn:
        await acc.delete_account(conn, doomed)
        assert await acc.find_account(conn, "doomed") is None
    for table in OWNED:
        assert await _count(store, table, doomed) == 0, table.name
        assert await _count(store, table, kept) == 1, table.name


async def test_an_account_name_is_unique(store: t.Store) -> None:
    await _account(store, "team-a")
    with pytest.raises(IntegrityError):
        await _account(store, "team-a")


async def test_a_quota_as_large_as_the_cli_accepts_is_stored(store: t.Store) -> None:
    """PostgreSQL's INTEGER is 32-bit: the CLI's bound is what the column holds."""
    account = await _account(store)
    async with store.begin() as conn:
        await acc.set_quotas(conn, account, {"max_build_bytes": MAX_QUOTA, "max_workers": 3})
        assert await acc.quota(conn, account, "max_build_bytes", object()) == MAX_QUOTA
        await acc.set_quotas(conn, account, {"max_workers": 0})  # back to the engine-wide setting
        assert await conn.scalar(select(t.accounts.c.max_workers).where(t.accounts.c.sid == account)) is None


# --- the uniqueness the API maps to 409 ------------------------------------------------------


async def test_every_unique_name_raises_the_integrity_error_the_api_maps_to_409(store: t.Store) -> None:
    """`resources/*.py` catch sqlalchemy's IntegrityError: PostgreSQL's driver error must arrive as it."""
    account = await _account(store)
    async with store.begin() as conn:
        service = await _service(conn, account, "shop")
        environment = await _environment(conn, account, service, "dev", domain="shop-dev.localhost")
        await _variable(conn, account, service, environment, "KEY")
    attempts = {
        "service UniqueName": lambda conn: _service(conn, account, "shop"),
        "environment UniqueName": lambda conn: _environment(conn, account, service, "dev"),
        "environment domain": lambda conn: _environment(conn, account, service, "other", domain="shop-dev.localhost"),
        "variable Key": lambda conn: _variable(conn, account, service, environment, "KEY"),
    }
    for what, attempt in attempts.items():
        with pytest.raises(IntegrityError):
            async with store.begin() as conn:
                await attempt(conn)
                pytest.fail(f"a second {what} was accepted")
    other_account = await _account(store, "team-b")
    async with store.begin() as conn:  # the same names elsewhere are fine
        await _environment(conn, other_account, await _service(conn, other_account, "shop"), "dev")
        await _variable(conn, account, service, await _environment(conn, account, service, "stage"), "KEY")


async def test_unique_names_are_case_sensitive_on_both_databases(store: t.Store) -> None:
    account = await _account(store)
    async with store.begin() as conn:
        await _service(conn, account, "shop")
        await _service(conn, account, "Shop")
        found = (await conn.scalars(select(t.services.c.unique_name).where(t.services.c.unique_name == "shop"))).all()
    assert found == ["shop"]


async def test_two_writers_creating_the_same_service_at_once_one_wins_the_other_gets_the_integrity_error(store: t.Store) -> None:
    account = await _account(store)
    inserted = asyncio.Event()

    async def writer(first: bool) -> str:
        try:
            async with store.begin() as conn:
                if not first:
                    await inserted.wait()
                await _service(conn, account, "race")
                if first:
                    inserted.set()
                    await asyncio.sleep(0.5)  # the other writer meets our uncommitted row
            return "won"
        except IntegrityError:
            return "conflict"
        finally:
            inserted.set()

    results = await asyncio.wait_for(asyncio.gather(writer(True), writer(False)), timeout=60)
    assert sorted(results) == ["conflict", "won"]
    async with store.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(t.services).where(t.services.c.unique_name == "race")) == 1


async def test_names_at_the_column_width_in_multibyte_characters_fit(store: t.Store) -> None:
    """The API bounds names in characters (`max_length`): so do both databases."""
    account = await _account(store)
    async with store.begin() as conn:
        sid = await _service(conn, account, "é" * 50)
        assert await conn.scalar(select(t.services.c.unique_name).where(t.services.c.sid == sid)) == "é" * 50


# --- blobs -----------------------------------------------------------------------------------


async def test_identical_content_is_stored_once(store: t.Store) -> None:
    async with store.begin() as conn:
        first = await t.put_blob(conn, b"same bytes")
        second = await t.put_blob(conn, b"same bytes")
        other = await t.put_blob(conn, b"other bytes")
        assert first == second != other
        assert await conn.scalar(select(func.count()).select_from(t.blobs)) == 2
        assert await t.get_blob(conn, first) == b"same bytes"
        with pytest.raises(LookupError):
            await t.get_blob(conn, "0" * 64)


async def test_a_5_mb_blob_of_every_byte_value_round_trips(store: t.Store) -> None:
    data = bytes(range(256)) * (5 * 1024 * 1024 // 256)
    async with store.begin() as conn:
        digest = await t.put_blob(conn, data)
    async with store.connect() as conn:
        back = await t.get_blob(conn, digest)
        size = await conn.scalar(select(t.blobs.c.size_bytes).where(t.blobs.c.sha256 == digest))
    assert back == data and size == len(data)


async def test_two_writers_storing_the_same_content_at_once_both_succeed(store: t.Store) -> None:
    """Two uploads of one file (two replicas, or two requests) race on the blob's key: both succeed."""
    inserted = asyncio.Event()

    async def writer(first: bool) -> str:
        try:
            async with store.begin() as conn:
                if not first:
                    await inserted.wait()
                digest = await t.put_blob(conn, b"racing bytes")
                if first:
                    inserted.set()
                    await asyncio.sleep(0.5)
                return digest
        finally:
            inserted.set()

    first, second = await asyncio.wait_for(asyncio.gather(writer(True), writer(False)), timeout=60)
    assert first == second
    async with store.connect() as conn:
        assert await t.get_blob(conn, first) == b"racing bytes"


# --- builds, versions, deployments, variables ------------------------------------------------


async def test_builds_versions_and_deployments_round_trip(store: t.Store) -> None:
    account = await _account(store)
    made = await _everything(store, account)
    async with store.begin() as conn:
        await conn.execute(update(t.builds).where(t.builds.c.sid == made["build"]).values(status="completed", date_updated=t.now()))
        await conn.execute(update(t.environments).where(t.environments.c.sid == made["environment"]).values(build_sid=made["build"]))
    async with store.connect() as conn:
        build = (await conn.execute(select(t.builds).where(t.builds.c.sid == made["build"]))).one()
        version = (await conn.execute(select(t.versions).where(t.versions.c.sid == made["version"]))).one()
        deployment = (await conn.execute(select(t.deployments).where(t.deployments.c.sid == made["deployment"]))).one()
        environment = (await conn.execute(select(t.environments).where(t.environments.c.sid == made["environment"]))).one()
        service = (await conn.execute(select(t.services).where(t.services.c.sid == made["service"]))).one()
    assert build.status == "completed" and json.loads(build.function_versions) == [made["version"]]
    assert json.loads(build.dependencies) == [{"name": "lodash", "version": "4.17.21"}] and build.error is None
    assert (version.path, version.size_bytes, version.filename) == ("/hi", 48, "hi.js")
    assert deployment.build_sid == made["build"] and environment.build_sid == made["build"]
    assert service.include_credentials is True and service.ui_editable is False  # booleans, not 1/0


async def test_a_variable_value_of_any_unicode_text_round_trips(store: t.Store) -> None:
    account = await _account(store)
    value = "emoji 🎉, quotes ' \" \\, newline\n, tab\t, CJK 漢字" * 20
    async with store.begin() as conn:
        service = await _service(conn, account)
        environment = await _environment(conn, account, service)
        sid = await _variable(conn, account, service, environment, "TEXT", value)
    async with store.connect() as conn:
        assert await conn.scalar(select(t.variables.c.value).where(t.variables.c.sid == sid)) == value


# --- timestamps ------------------------------------------------------------------------------


async def test_timestamps_come_back_aware_in_utc_to_the_microsecond(store: t.Store) -> None:
    account = await _account(store)
    plus_five = timezone(timedelta(hours=5))
    written = datetime(2026, 12, 6, 14, 30, 15, 123456, tzinfo=plus_five)
    async with store.begin() as conn:
        await conn.execute(update(t.accounts).where(t.accounts.c.sid == account).values(date_updated=written))
        created = await conn.scalar(select(t.accounts.c.date_created).where(t.accounts.c.sid == account))
        updated = await conn.scalar(select(t.accounts.c.date_updated).where(t.accounts.c.sid == account))
        # compared in SQL with an aware value on both databases
        later = await conn.scalar(select(func.count()).select_from(t.accounts).where(
            t.accounts.c.date_updated > datetime(2026, 12, 6, 9, 30, 15, tzinfo=timezone.utc)))
    assert updated == written and updated.utcoffset() == timedelta(0)
    assert created.tzinfo is not None and abs(t.now() - created) < timedelta(minutes=5)
    assert later == 1


# --- logs ------------------------------------------------------------------------------------


async def test_the_log_sink_keeps_the_newest_lines_in_order_and_stores_any_text(store: t.Store) -> None:
    account = await _account(store)
    async with store.begin() as conn:
        service = await _service(conn, account)
        environment = await _environment(conn, account, service)
    sink = LogSink(store, max_entries=5, retention_s=3600)
    sink.served["shop-dev"] = Served(account, service, environment, new_sid("ZB"), {"hi": new_sid("ZH")})
    for i in range(8):
        sink.tap({"event": "handler_log", "service": "shop-dev", "function": "hi", "stream_level": "info", "message": f"line {i}"})
    sink.tap({"event": "handler_log", "service": "shop-dev", "function": "hi", "stream_level": "error",
              "message": "nul \x00 and lone surrogate \ud800 end"})
    await sink.flush()
    async with store.connect() as conn:
        rows = (await conn.execute(select(t.logs.c.message, t.logs.c.level).where(t.logs.c.environment_sid == environment)
                                   .order_by(t.logs.c.seq))).all()
    assert [m for m, _ in rows[:-1]] == ["line 4", "line 5", "line 6", "line 7"]
    message, level = rows[-1]
    assert level == "error" and message.startswith("nul \ufffd and lone surrogate ") and message.endswith(" end")


async def test_the_log_sink_removes_lines_past_retention(store: t.Store) -> None:
    account = await _account(store)
    async with store.begin() as conn:
        service = await _service(conn, account)
        environment = await _environment(conn, account, service)
        await conn.execute(insert(t.logs).values(sid=new_sid("NO"), account_sid=account, service_sid=service, environment_sid=environment,
                                                 level="info", message="old", date_created=t.now() - timedelta(hours=2)))
    sink = LogSink(store, max_entries=100, retention_s=3600)
    sink.served["s"] = Served(account, service, environment, new_sid("ZB"), {})
    sink.tap({"event": "handler_log", "service": "s", "function": "x", "stream_level": "info", "message": "new"})
    await sink.flush()
    async with store.connect() as conn:
        assert (await conn.scalars(select(t.logs.c.message).where(t.logs.c.environment_sid == environment))).all() == ["new"]
