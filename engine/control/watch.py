"""The change feed between replicas on one PostgreSQL store.

Every transaction that changes what is served announces it (`announce`): `pg_notify` on one
channel with the environment's SID, or `*` for anything wider (an account or a quota). PostgreSQL
delivers it at commit, to every replica, the writer included (which finds nothing to do).

Each replica holds one dedicated connection that LISTENs (`StoreWatch`) and hands what it hears to
the converger. NOTIFY is a shortcut, never the only path: the converger's pass every
`converge_interval_s` still compares the whole store. When the connection breaks the watch
reconnects with back-off, logs the outage once, and asks for a full pass once it is back, since
what was announced in the gap is lost. On SQLite there is one engine and nothing to announce.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import structlog
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection

log = structlog.get_logger("engine.control")

CHANNEL = "functions_engine_changes"
EVERYTHING = "*"
#: The first wait before reconnecting a broken LISTEN connection, doubled up to the next bound.
RECONNECT_FIRST_S = 0.2
RECONNECT_MAX_S = 5.0
#: How often a quiet LISTEN connection is checked, so a silently dead one (a partition, not a close)
#: is noticed, and how long the check may take.
CHECK_EVERY_S = 10.0
CHECK_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 10.0


async def announce(conn: AsyncConnection, what: str = EVERYTHING) -> None:
    """In the caller's transaction: tell every replica, at commit, that `what` (an environment SID,
    or `*`) changed. Nothing on SQLite."""
    if conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_notify(CHANNEL, what)))


#: Query parameters SQLAlchemy's asyncpg dialect keeps for itself (the rest go to asyncpg.connect).
_DIALECT_ONLY = ("prepared_statement_cache_size", "prepared_statement_name_func", "async_fallback")


def connect_kwargs(url: str) -> dict[str, Any]:
    """The store's SQLAlchemy URL (`postgresql+asyncpg://…?ssl=require`) as `asyncpg.connect`
    keywords, the way SQLAlchemy passes them, so a dedicated connection reaches the same server the
    same way (in a DSN, asyncpg would send `ssl` to the server as a setting)."""
    parsed = make_url(url)
    kwargs: dict[str, Any] = parsed.translate_connect_args(username="user", database="database")
    kwargs.update({k: v for k, v in parsed.query.items() if k not in _DIALECT_ONLY})
    return kwargs


class StoreWatch:
    """One LISTEN connection, kept open; `on_change(what)` for every announcement, and `*` after a gap."""

    def __init__(self, url: str, name: str, on_change: Callable[[str], None]) -> None:
        self.connect_kwargs = connect_kwargs(url)
        self.name = name  # application_name in pg_stat_activity: which replica this connection is
        self.on_change = on_change
        self.listening = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="store-watch")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _heard(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        self.on_change(payload or EVERYTHING)

    async def _run(self) -> None:
        wait_s = RECONNECT_FIRST_S
        lost_at: float | None = None  # set while the connection is down (logged once per outage)
        while True:
            conn = None
            connected_at: float | None = None
            try:
                conn = await asyncpg.connect(**self.connect_kwargs, timeout=CONNECT_TIMEOUT_S,
                                             server_settings={"application_name": self.name})
                closed = asyncio.Event()
                conn.add_termination_listener(lambda _c: closed.set())
                await conn.add_listener(CHANNEL, self._heard)
                self.listening = True
                connected_at = time.monotonic()
                if lost_at is not None:
                    log.info("store_watch_restored", down_ms=round((time.monotonic() - lost_at) * 1000))
                    lost_at = None
                # What was announced before it listened (start-up, an outage) is lost: look at everything.
                self.on_change(EVERYTHING)
                while not closed.is_set():
                    try:
                        await asyncio.wait_for(closed.wait(), CHECK_EVERY_S)
                    except TimeoutError:
                        await conn.fetchval("SELECT 1", timeout=CHECK_TIMEOUT_S)
                reason = "the connection was closed"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # OSError, asyncpg's errors, timeouts: the same for the watch
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                self.listening = False
                if conn is not None:
                    conn.terminate()
            if lost_at is None:
                lost_at = time.monotonic()
                log.warning("store_watch_lost", reason=reason[:300],
                            fallback="changes from other replicas arrive by the converge pass until it is back")
            if connected_at is not None and time.monotonic() - connected_at > RECONNECT_MAX_S:
                wait_s = RECONNECT_FIRST_S  # it held for a while: this is a new outage, not a flapping one
            await asyncio.sleep(wait_s)
            wait_s = min(wait_s * 2, RECONNECT_MAX_S)
