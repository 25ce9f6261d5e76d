"""Every table of the control plane (SQLAlchemy Core), and the store that opens them.

The embedded default is SQLite in `--data-dir` (WAL, so readers never wait on the writer); any
other SQLAlchemy async URL (`--database-url`, e.g. `postgresql+asyncpg://…`) is the same code.
Uploaded bytes are content-addressed blobs (sha256) in the store itself, so one store holds every
piece of state and an engine restarted on it can rebuild every active deployment.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import structlog

from sqlalchemy import (
    Boolean, Column, DateTime, ForeignKey, Index, Integer, LargeBinary, MetaData, String, Table, Text,
    TypeDecorator, UniqueConstraint, event, select, text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from engine.control import schema
from engine.control.dburl import for_asyncpg
from engine.control.errors import StoreUnavailable
from engine.control.outage import StoreHealth, store_unavailable
from engine.errors import ConfigError, EngineError

log = structlog.get_logger("engine.control")

metadata = MetaData()

SID = 34  # two-letter prefix + 32 hex digits, as the hosted API


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime in and out on every database. PostgreSQL's timestamptz hands back
    aware values, SQLite (no zone type) naive ones; code and comparisons see one kind. A naive
    value written is taken as UTC. The column itself is DateTime(timezone=True), as migrated."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _sid_column(name: str = "sid") -> Column:
    return Column(name, String(SID), primary_key=True)


def _owner() -> Column:
    """Every row belongs to one account; every query filters on it (another account gets 404)."""
    return Column("account_sid", String(SID), ForeignKey("accounts.sid", ondelete="CASCADE"), nullable=False, index=True)


def _dates() -> list[Column]:
    return [
        Column("date_created", UtcDateTime(), nullable=False),
        Column("date_updated", UtcDateTime(), nullable=False),
    ]


accounts = Table(
    "accounts", metadata,
    _sid_column(),
    Column("friendly_name", String(64), nullable=False, unique=True),
    Column("token_hash", String(255), nullable=False),  # argon2id; the token itself is never stored
    *_dates(),
    # Per-account quotas (`accounts create|update` flags); NULL: the engine-wide setting of that name.
    Column("max_services", Integer, nullable=True),
    Column("max_environments_per_service", Integer, nullable=True),
    Column("builds_per_hour", Integer, nullable=True),
    Column("max_version_bytes", Integer, nullable=True),
    Column("max_build_bytes", Integer, nullable=True),
    Column("max_workers", Integer, nullable=True),
)

#: The quota columns of `accounts`, each named after the engine-wide setting it overrides
#: (`max_services` overrides `max_services_per_account`).
QUOTAS = {
    "max_services": "max_services_per_account",
    "max_environments_per_service": "max_environments_per_service",
    "builds_per_hour": "builds_per_hour",
    "max_version_bytes": "max_version_bytes",
    "max_build_bytes": "max_build_bytes",
    "max_workers": "max_workers_per_account",
}

api_keys = Table(
    "api_keys", metadata,
    _sid_column(),
    _owner(),
    Column("friendly_name", String(64), nullable=False),
    Column("secret_hash", String(255), nullable=False),
    *_dates(),
)

services = Table(
    "services", metadata,
    _sid_column(),
    _owner(),
    Column("unique_name", String(50), nullable=False),
    Column("friendly_name", String(255), nullable=False),
    Column("include_credentials", Boolean, nullable=False, default=True),
    Column("ui_editable", Boolean, nullable=False, default=False),
    *_dates(),
    UniqueConstraint("account_sid", "unique_name", name="uq_services_account_unique_name"),
)

environments = Table(
    "environments", metadata,
    _sid_column(),
    _owner(),
    Column("service_sid", String(SID), ForeignKey("services.sid", ondelete="CASCADE"), nullable=False, index=True),
    Column("unique_name", String(100), nullable=False),
    Column("domain_suffix", String(16), nullable=True),
    # Routed by Host across every account, so unique across the store.
    Column("domain_name", String(255), nullable=False, unique=True),
    Column("build_sid", String(SID), nullable=True),  # what it serves (set by a deployment)
    *_dates(),
    UniqueConstraint("service_sid", "unique_name", name="uq_environments_service_unique_name"),
)

variables = Table(
    "variables", metadata,
    _sid_column(),
    _owner(),
    Column("service_sid", String(SID), ForeignKey("services.sid", ondelete="CASCADE"), nullable=False),
    Column("environment_sid", String(SID), ForeignKey("environments.sid", ondelete="CASCADE"), nullable=False, index=True),
    Column("key", String(128), nullable=False),
    Column("value", Text, nullable=False),
    *_dates(),
    UniqueConstraint("environment_sid", "key", name="uq_variables_environment_key"),
)

# A Function or an Asset (kind): a named slot whose content lives in immutable versions.
entries = Table(
    "entries", metadata,
    _sid_column(),
    _owner(),
    Column("service_sid", String(SID), ForeignKey("services.sid", ondelete="CASCADE"), nullable=False, index=True),
    Column("kind", String(8), nullable=False),  # "function" | "asset"
    Column("friendly_name", String(255), nullable=False),
    *_dates(),
)

blobs = Table(
    "blobs", metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size_bytes", Integer, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("date_created", UtcDateTime(), nullable=False),
)

versions = Table(
    "versions", metadata,
    _sid_column(),
    _owner(),
    Column("service_sid", String(SID), ForeignKey("services.sid", ondelete="CASCADE"), nullable=False),
    Column("entry_sid", String(SID), ForeignKey("entries.sid", ondelete="CASCADE"), nullable=False, index=True),
    Column("kind", String(8), nullable=False),
    Column("path", String(255), nullable=False),
    Column("visibility", String(16), nullable=False),
    Column("filename", String(255), nullable=False),  # as uploaded: its extension picks the runtime
    Column("content_type", String(255), nullable=False),
    Column("blob_sha256", String(64), ForeignKey("blobs.sha256"), nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("date_created", UtcDateTime(), nullable=False),
)

builds = Table(
    "builds", metadata,
    _sid_column(),
    _owner(),
    Column("service_sid", String(SID), ForeignKey("services.sid", ondelete="CASCADE"), nullable=False, index=True),
    Column("status", String(16), nullable=False),  # building | completed | failed
    Column("runtime", String(16), nullable=False),
    Column("dependencies", Text, nullable=False),  # JSON list of {name, version}
    Column("function_versions", Text, nullable=False),  # JSON list of ZN sids
    Column("asset_versions", Text, nullable=False),
    Column("size_bytes", Integer, nullable=False),
    Column("error", Text, nullable=True),  # why it failed, for people
    *_dates(),
    Index("ix_builds_account_created", "account_sid", "date_created"),
    # While `building`: the replica (engine id) running it and until when it holds it (renewed while
    # it runs). An expired lease means that replica is gone: any replica takes the build over.
    Column("owner", String(64), nullable=True),
    Column("lease_expires_at", DateTime(timezone=True), nullable=True),
    Index("ix_builds_status", "status"),
)

deployments = Table(
    "deployments", metadata,
    _sid_column(),
    _owner(),
    Column("service_sid", String(SID), ForeignKey("services.sid", ondelete="CASCADE"), nullable=False),
    Column("environment_sid", String(SID), ForeignKey("environments.sid", ondelete="CASCADE"), nullable=False, index=True),
    Column("build_sid", String(SID), ForeignKey("builds.sid", ondelete="CASCADE"), nullable=False),
    *_dates(),
)

logs = Table(
    "logs", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),  # newest last, stable pages
    Column("sid", String(SID), nullable=False, unique=True),
    _owner(),
    Column("service_sid", String(SID), ForeignKey("services.sid", ondelete="CASCADE"), nullable=False),
    Column("environment_sid", String(SID), ForeignKey("environments.sid", ondelete="CASCADE"), nullable=False, index=True),
    Column("build_sid", String(SID), nullable=True),
    Column("deployment_sid", String(SID), nullable=True),
    Column("function_sid", String(SID), nullable=True),
    Column("request_sid", String(SID), nullable=True),
    Column("level", String(8), nullable=False),
    Column("message", Text, nullable=False),
    Column("date_created", UtcDateTime(), nullable=False),
)


def now() -> datetime:
    return datetime.now(timezone.utc)


def database_url(data_dir: Path | None, url: str | None) -> str:
    """`--database-url` (a plain `postgresql://` URL gets the asyncpg driver), else the embedded
    SQLite file in `--data-dir`."""
    if url:
        try:
            return normalise_url(url)
        except ValueError as exc:  # e.g. a port that is not a number; from None: the message may hold the URL
            raise StoreError(f"{mask_url(url)} is not a control store URL this engine can open ({_scrub(str(exc), url)}); "
                             "use postgresql://USER:PASSWORD@HOST:PORT/DB") from None
    if data_dir is None:
        raise ConfigError("the control store needs --data-dir DIR or --database-url URL (ENGINE_DATA_DIR / ENGINE_DATABASE_URL)")
    return f"sqlite+aiosqlite:///{Path(data_dir).resolve() / 'engine.db'}"


def normalise_url(url: str) -> str:
    """`postgresql://…` and `postgres://…` (what operators and managed services hand out) select
    the async driver this package ships; any explicit `+driver` is kept."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            url = "postgresql+asyncpg://" + url[len(scheme):]
    return for_asyncpg(url) if url.startswith("postgresql+asyncpg://") else url  # libpq's sslmode= → ssl=


def is_postgres(url: str) -> bool:
    return url.startswith(("postgresql", "postgres"))


_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


def mask_url(url: str) -> str:
    """The URL with its password replaced by `***`: the only form of a store URL that is ever
    printed or logged (an unparsable URL is masked by pattern)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return _PASSWORD.sub(r"\1***@", url)


def describe(url: str) -> str:
    """`HOST:PORT/DB` of a server store, the file of the embedded one: where, for people."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return mask_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.database or "(memory)"
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.host or 'localhost'}{port}/{parsed.database or ''}"


def _scrub(message: str, url: str) -> str:
    """A driver's message with the URL's password removed, should it ever repeat it."""
    try:
        password = make_url(url).password
    except (ArgumentError, ValueError):
        password = None
    return message.replace(str(password), "***") if password else message


class StoreError(EngineError):
    """The control store cannot be used: bad URL, unreachable, or a schema this engine must not
    run on. One line, the URL masked, saying what to do; `serve` and the CLI exit 2."""


def _upgrade_command(url: str) -> str:
    if url.startswith("sqlite"):
        return f"python -m engine db upgrade --data-dir {Path(describe(url)).parent}"
    return f"python -m engine db upgrade --database-url {mask_url(url)}"


def _make_sqlite_dir(url: str) -> None:
    if url.startswith("sqlite"):
        Path(url.split(":///", 1)[-1]).parent.mkdir(parents=True, exist_ok=True)


#: Defaults of `database_connect_timeout_s` and `database_command_timeout_s` (engine/config.py).
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 10.0


def open_engine(url: str, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                command_timeout_s: float = COMMAND_TIMEOUT_S) -> AsyncEngine:
    """An async SQLAlchemy engine; SQLite gets WAL, foreign keys and a busy timeout. PostgreSQL gets
    connect and statement timeouts (a dead or frozen server costs a request seconds, not minutes),
    and every pooled connection is pinged before use (one left over from before a server restart
    is replaced, not handed to a request)."""
    is_sqlite = url.startswith("sqlite")
    _make_sqlite_dir(url)
    try:
        if is_sqlite:
            db = create_async_engine(url, connect_args={"timeout": 30}, pool_pre_ping=True)
        else:
            is_asyncpg = url.startswith("postgresql+asyncpg://")  # what normalise_url gives every postgresql:// URL
            connect_args = {"timeout": connect_timeout_s, "command_timeout": command_timeout_s} if is_asyncpg else {}
            db = create_async_engine(url, connect_args=connect_args, pool_pre_ping=True, pool_timeout=connect_timeout_s)
    except (SQLAlchemyError, ValueError, ImportError) as exc:  # from None: the driver's message may hold the URL
        raise StoreError(f"{mask_url(url)} is not a control store URL this engine can open ({_scrub(str(exc), url)}); "
                         "use postgresql://USER:PASSWORD@HOST:PORT/DB, or --data-dir DIR for the embedded store") from None
    if is_sqlite:
        @event.listens_for(db.sync_engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
    return db


def migrate(url: str, revision: str = "head") -> None:
    """Run the packaged Alembic migrations up to `revision` (blocking: call from a thread).

    Idempotent, and safe to run from several processes at once: on PostgreSQL env.py holds an
    advisory lock for the whole upgrade, on SQLite a lock file beside the database does the same
    (an engine and the accounts CLI starting together on a new data dir); the others then find
    nothing to do."""
    from alembic import command
    from alembic.config import Config

    _make_sqlite_dir(url)
    cfg = Config()
    cfg.set_main_option("script_location", "engine.control:migrations")
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if not url.startswith("sqlite"):
        command.upgrade(cfg, revision)
        return
    import fcntl

    with open(Path(url.split(":///", 1)[-1]).with_suffix(".migrate.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        command.upgrade(cfg, revision)


class Store:
    """The opened store: one async engine; `begin()` gives a transaction, `connect()` a connection.

    Both translate "the database cannot be reached" into `StoreUnavailable` (503 in the API) and
    tell `health` (the gauge, the log lines, the catch-up after an outage); any success tells it
    the store is back."""

    def __init__(self, url: str, connect_timeout_s: float = CONNECT_TIMEOUT_S,
                 command_timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        self.url = url
        self.db = open_engine(url, connect_timeout_s, command_timeout_s)
        self.health = StoreHealth()
        self.health.probe = self.ping

    async def upgrade(self) -> None:
        await asyncio.to_thread(migrate, self.url)

    async def verdict(self) -> schema.Verdict:
        """Where the store's schema stands for this engine; an unreachable store is a StoreError."""
        try:
            async with self.db.connect() as conn:
                state = await conn.run_sync(schema.read_state)
        except Exception as exc:
            if not (isinstance(exc, (SQLAlchemyError, OSError, asyncio.TimeoutError)) or store_unavailable(exc)):
                raise
            reason = _scrub(str(getattr(exc, "orig", None) or exc).splitlines()[0] or type(exc).__name__, self.url)
            raise StoreError(f"cannot open the control store at {mask_url(self.url)}: {reason}; check the URL "
                             "(--database-url, ENGINE_DATABASE_URL or database_url in the config file) and that "
                             "the server is running and reachable from here") from None
        return schema.judge(state)

    async def prepare(self, *, upgrade: bool | None = None) -> None:
        """Make sure this engine may run on the store. `upgrade=None`: the embedded SQLite store
        migrates itself, a PostgreSQL one must have been migrated by `db upgrade` (else StoreError);
        `upgrade=True`: migrate in any case (the `db upgrade` command)."""
        verdict = await self.verdict()
        where = describe(self.url)
        if verdict.kind == "unknown":
            raise StoreError(f"the store at {where} is at schema {verdict.revision}, which this engine (schema {verdict.head}) "
                             "does not know (newer engine?): upgrade the engine or point it at the right database")
        if verdict.kind == "newer":
            log.warning("store_schema_newer", store=where, schema=verdict.revision, engine_schema=verdict.head,
                        compatible_from=verdict.compatible_from)
            return
        if verdict.kind == "behind":
            migrate_now = upgrade if upgrade is not None else not is_postgres(self.url)
            if not migrate_now:
                at = f"at schema {verdict.revision}" if verdict.revision else "empty (no schema)"
                raise StoreError(f"the store at {where} is {at}; this engine needs {verdict.head}: "
                                 f"run `{_upgrade_command(self.url)}` (with the password), then start again")
            await self.upgrade()

    @asynccontextmanager
    async def _reachable(self) -> AsyncIterator[None]:
        try:
            yield
        except StoreUnavailable:
            raise
        except Exception as exc:
            if not store_unavailable(exc):
                raise
            self.health.mark_down(exc)
            raise StoreUnavailable(type(exc).__name__) from exc
        if not self.health.up:
            self.health.mark_up()

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        async with self._reachable(), self.db.begin() as conn:
            yield conn

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        async with self._reachable(), self.db.connect() as conn:
            yield conn

    async def ping(self) -> None:
        """One `SELECT 1`: the probe that notices the store is back."""
        async with self.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def close(self) -> None:
        await self.health.close()
        await self.db.dispose()


async def put_blob(conn: AsyncConnection, data: bytes) -> str:
    """Store `data` once by its sha256 (identical uploads share one row); returns the hash."""
    digest = hashlib.sha256(data).hexdigest()
    found = await conn.scalar(select(blobs.c.sha256).where(blobs.c.sha256 == digest))
    if found is None:  # another writer may store the same bytes meanwhile: theirs is as good
        await conn.execute(_insert_for(conn)(blobs).values(sha256=digest, size_bytes=len(data), data=data, date_created=now())
                           .on_conflict_do_nothing(index_elements=[blobs.c.sha256]))
    return digest


def _insert_for(conn: AsyncConnection) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (both SQLite and PostgreSQL do)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


async def get_blob(conn: AsyncConnection, digest: str) -> bytes:
    data = await conn.scalar(select(blobs.c.data).where(blobs.c.sha256 == digest))
    if data is None:
        raise LookupError(f"blob {digest} is missing from the store")
    return bytes(data)
