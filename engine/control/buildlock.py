"""One dependency install per content across the replicas of one PostgreSQL store.

The backend holds this guard around building an image its daemon does not have yet, keyed by the
content hash: a PostgreSQL advisory lock on a connection of its own, so a replica that dies while
installing releases it with its connection. The replica that waited then finds the image built (on
a shared daemon) and builds nothing; on a daemon of its own it builds, after the first one is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator

import asyncpg
import structlog

from engine.control.watch import connect_kwargs

log = structlog.get_logger("engine.control")

CONNECT_TIMEOUT_S = 10.0


def lock_key(key: str) -> int:
    """A signed 64-bit advisory lock key for `key` (the namespace keeps it apart from other users' locks)."""
    digest = hashlib.sha256(f"functions-engine image build\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class BuildLocks:
    def __init__(self, url: str, name: str) -> None:
        self.connect_kwargs = connect_kwargs(url)
        self.name = name  # application_name in pg_stat_activity

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Exclusive across replicas for `key` while the body runs. Without the store (an outage) the
        body runs unguarded: a second install of the same content is wasted work, never a wrong image."""
        conn: asyncpg.Connection | None = None
        try:
            conn = await asyncpg.connect(**self.connect_kwargs, timeout=CONNECT_TIMEOUT_S,
                                         server_settings={"application_name": self.name})
            began = time.monotonic()
            await conn.execute("SELECT pg_advisory_lock($1)", lock_key(key))
            waited_s = time.monotonic() - began
            if waited_s > 0.1:
                log.info("build_lock_waited", key=key, waited_ms=round(waited_s * 1000))
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("build_lock_unavailable", key=key, error=f"{type(exc).__name__}: {exc}"[:300])
            if conn is not None:
                conn.terminate()
            conn = None
        except BaseException:  # cancelled while waiting for the lock
            if conn is not None:
                conn.terminate()
            raise
        try:
            yield
        finally:
            if conn is not None:  # the session's end releases the lock, whatever state it is in
                try:
                    await conn.close(timeout=CONNECT_TIMEOUT_S)
                except asyncio.CancelledError:
                    conn.terminate()
                    raise
                except Exception:
                    conn.terminate()
