"""Alembic's entry point for the control store: runs the migrations on an async connection."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from engine.control import schema
from engine.control.store import metadata

config = context.config


def _ours(obj, name, type_, reflected, compare_to) -> bool:  # type: ignore[no-untyped-def]
    """Autogenerate compares only `store.metadata`: the compatibility marker is written outside it."""
    return not (type_ == "table" and name == schema.COMPAT_TABLE)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    if connection.dialect.name == "postgresql":
        # One upgrade at a time (a Job, init containers of several replicas): the others wait here,
        # then find the schema at head and do nothing. Held until this transaction commits; the
        # migration context then runs inside it (PostgreSQL's DDL is transactional: all or nothing).
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": schema.MIGRATION_LOCK_KEY})
    # render_as_batch: SQLite cannot ALTER most things; batch mode copies the table instead.
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, include_object=_ours)
    with context.begin_transaction():
        context.run_migrations()
        revision = context.get_context().get_current_revision()
        if revision is not None:
            schema.write_compat(connection, revision)


async def _online() -> None:
    db = create_async_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        async with db.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await db.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_online())
