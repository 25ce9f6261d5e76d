"""Migrations from every earlier schema to the newest, on SQLite and PostgreSQL, with data in it.

For each revision Alembic knows before the head (a new migration is covered without touching this
file): an empty database is migrated to it, one row is written to every table with the columns
that revision has (read from the database itself), the database is migrated to the head, and
every value must be there unchanged; then the current engine writes through its own code."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import Boolean, DateTime, Integer, LargeBinary, MetaData, String, Table, select

from engine.control import schema
from engine.control import store as t
from tests.control.stores import store_url  # noqa: F401  (a fixture: SQLite and PostgreSQL)
from tests.control.test_store import _account, _everything

WHEN = datetime(2026, 12, 6, 8, 0, 0, 250000, tzinfo=timezone.utc)
SKIP = {schema.VERSION_TABLE, schema.COMPAT_TABLE}


def _value(table: Table, column: Any, serial: int) -> Any:
    kind = column.type
    if isinstance(kind, Boolean):
        return True
    if isinstance(kind, Integer):
        return 1000 + serial
    if isinstance(kind, DateTime):
        return WHEN
    if isinstance(kind, LargeBinary):
        return bytes(range(256))
    text = f"{table.name[:6]}{serial:04d}é"
    width = getattr(kind, "length", None) if isinstance(kind, String) else None
    return text[-width:] if width else text + " and longer text"


async def _rows_at(url: str) -> dict[str, dict[str, Any]]:
    """One row in every table, with every column the schema has now (foreign keys point at the
    parent's row); returns what was written, by table."""
    db = t.open_engine(url)
    written: dict[str, dict[str, Any]] = {}
    try:
        async with db.begin() as conn:
            meta = MetaData()
            await conn.run_sync(meta.reflect)
            serial = 0
            for table in meta.sorted_tables:
                if table.name in SKIP:
                    continue
                row: dict[str, Any] = {}
                for column in table.columns:
                    if column.autoincrement is True or (column.primary_key and isinstance(column.type, Integer)):
                        continue  # the database numbers it (explicit values would not move its sequence)
                    foreign = next(iter(column.foreign_keys), None)
                    if foreign is not None:
                        row[column.name] = written[foreign.column.table.name][foreign.column.name]
                    else:
                        serial += 1
                        row[column.name] = _value(table, column, serial)
                await conn.execute(table.insert().values(**row))
                written[table.name] = row
    finally:
        await db.dispose()
    return written


async def _read_back(url: str, written: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    db = t.open_engine(url)
    found: dict[str, dict[str, Any]] = {}
    try:
        async with db.connect() as conn:
            meta = MetaData()
            await conn.run_sync(meta.reflect)
            for name, row in written.items():
                table = meta.tables[name]
                rows = (await conn.execute(select(*[table.c[c] for c in row]))).all()
                assert len(rows) == 1, (name, rows)
                values = dict(rows[0]._mapping)
                for key, value in values.items():
                    if isinstance(value, datetime) and value.tzinfo is None:  # SQLite keeps no zone
                        values[key] = value.replace(tzinfo=timezone.utc)
                    elif isinstance(value, memoryview):
                        values[key] = bytes(value)
                found[name] = values
    finally:
        await db.dispose()
    return found


@pytest.mark.parametrize("revision", schema.revisions()[:-1])
async def test_a_store_at_an_earlier_schema_upgrades_to_the_newest_with_its_data_intact(store_url: str, revision: str) -> None:
    await asyncio.to_thread(t.migrate, store_url, revision)
    written = await _rows_at(store_url)
    assert {"accounts", "services", "environments", "variables", "blobs", "builds", "logs"} <= set(written)

    store = t.Store(store_url)
    try:
        verdict = await store.verdict()
        assert (verdict.kind, verdict.revision) == ("behind", revision)
        await store.prepare(upgrade=True)
        assert (await store.verdict()).kind == "ok"
        assert await _read_back(store_url, written) == written
        account = await _account(store, "after-upgrade")  # the engine's own writes work on the upgraded store
        await _everything(store, account)
    finally:
        await store.close()


async def test_an_empty_store_upgrades_to_the_newest_schema_and_records_what_it_is_compatible_with(store_url: str) -> None:
    store = t.Store(store_url)
    try:
        verdict = await store.verdict()
        assert (verdict.kind, verdict.revision) == ("behind", None)
        await store.prepare(upgrade=True)
        await store.prepare(upgrade=True)  # idempotent
        async with store.connect() as conn:
            state = await conn.run_sync(schema.read_state)
        assert state == schema.SchemaState(schema.head(), schema.compatible_from(schema.head()))
    finally:
        await store.close()


def test_every_migration_declares_which_engines_still_run_on_its_schema() -> None:
    """`compatible_from` must name a revision at or before the migration's own: rolling upgrades
    depend on it (engine/control/schema.py)."""
    known = schema.revisions()
    for position, revision in enumerate(known):
        floor = schema.compatible_from(revision)
        assert floor in known[: position + 1], (revision, floor)


async def test_the_migrated_schema_is_exactly_what_the_code_declares(store_url: str) -> None:
    """`store.metadata` (what the code reads and writes) and the migrations (what databases get)
    must not drift apart, on either database: Alembic's autogenerate finds nothing to do."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    def diff(connection: Any) -> list[Any]:
        context = MigrationContext.configure(connection, opts={
            "compare_type": True, "include_object": lambda obj, name, type_, *_: name not in SKIP})
        return compare_metadata(context, t.metadata)

    await asyncio.to_thread(t.migrate, store_url)
    db = t.open_engine(store_url)
    try:
        async with db.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await db.dispose()
