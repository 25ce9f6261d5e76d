"""Which schema revision the store is at, and whether this engine may run on it.

Several replicas share one PostgreSQL store, and migrations are the operator's step
(`python -m engine db upgrade`, a Kubernetes Job), so an engine on PostgreSQL never migrates
itself: it reads the store's Alembic revision at start and refuses (exit 2, one line naming the
command) an empty or older schema. A rolling upgrade migrates first and then replaces replicas,
so old replicas meet a newer schema; they may run on it when it says they can: every upgrade
writes one row, `engine_schema_compat.compatible_from`, the oldest revision whose engines still
read and write this schema correctly (each migration script declares it as `compatible_from`;
an additive change keeps the previous value). An engine whose own revisions include that value
runs, with a warning; any other revision it does not know stops it.

The embedded SQLite store (one machine) migrates itself at start, but refuses an unknown newer
revision the same way.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, inspect, select

#: Alembic's own bookkeeping table.
VERSION_TABLE = "alembic_version"
#: The compatibility marker (one row), written after every upgrade by the migrations' env.py. Not
#: part of `store.metadata`, so Alembic's autogenerate leaves it alone.
COMPAT_TABLE = "engine_schema_compat"
#: The key of the PostgreSQL advisory lock that serialises `db upgrade` runs (Jobs, init containers
#: of several replicas at once). Derived from a name so other advisory locks can pick other names.
MIGRATION_LOCK_KEY = zlib.crc32(b"functions-engine:schema-migrations")

compat_metadata = MetaData()
compat = Table(
    COMPAT_TABLE, compat_metadata,
    Column("id", Integer, primary_key=True),  # always 1
    Column("revision", String(32), nullable=False),  # the schema's revision when it was written
    Column("compatible_from", String(32), nullable=False),
)


@lru_cache(maxsize=1)
def _script() -> Any:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", "engine.control:migrations")
    return ScriptDirectory.from_config(cfg)


def revisions() -> list[str]:
    """The revisions this engine knows, oldest first (one line of history)."""
    return [rev.revision for rev in reversed(list(_script().walk_revisions()))]


def head() -> str:
    return str(_script().get_current_head())


def compatible_from(revision: str) -> str:
    """The `compatible_from` its migration script declares (absent: the revision itself, the safe
    choice: engines older than it refuse this schema)."""
    module = _script().get_revision(revision).module
    return str(getattr(module, "compatible_from", None) or revision)


def write_compat(connection: Any, revision: str) -> None:
    """Record the schema's revision and its `compatible_from` (sync connection, inside the
    migration's transaction). Called by env.py after every upgrade, so whatever migration is the
    newest needs no code of its own for it."""
    compat_metadata.create_all(connection, checkfirst=True)
    connection.execute(compat.delete())
    connection.execute(compat.insert().values(id=1, revision=revision, compatible_from=compatible_from(revision)))


@dataclass(frozen=True)
class SchemaState:
    revision: str | None  # None: no schema (an empty database)
    compatible_from: str | None  # None: no marker (a store migrated before the marker existed)


def read_state(connection: Any) -> SchemaState:
    """The store's revision and marker (sync connection: `await conn.run_sync(read_state)`)."""
    names = set(inspect(connection).get_table_names())
    revision = None
    if VERSION_TABLE in names:
        revision = connection.exec_driver_sql(f"SELECT version_num FROM {VERSION_TABLE}").scalar()
    floor = None
    if COMPAT_TABLE in names:
        floor = connection.execute(select(compat.c.compatible_from).where(compat.c.id == 1)).scalar()
    return SchemaState(revision, floor)


@dataclass(frozen=True)
class Verdict:
    """What to do with a store: `ok`, `behind` (empty or older: migrate), `newer` (runs, warn),
    `unknown` (refuse)."""

    kind: str
    revision: str | None
    head: str
    compatible_from: str | None = None


def judge(state: SchemaState) -> Verdict:
    known, own = revisions(), head()
    if state.revision == own:
        return Verdict("ok", state.revision, own)
    if state.revision is None or state.revision in known:
        return Verdict("behind", state.revision, own)
    if state.compatible_from is not None and state.compatible_from in known:
        return Verdict("newer", state.revision, own, state.compatible_from)
    return Verdict("unknown", state.revision, own, state.compatible_from)
