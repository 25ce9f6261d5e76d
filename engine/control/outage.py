"""Whether the control store answers: which errors mean "the database is unreachable", and the
one place that says so (the `functions_engine_store_up` gauge, a `store_down` log line once per
outage, `store_up` once when it is back, and the callbacks that catch up after it).

An outage stops changes, never serving: the converger keeps what it serves, the Logs sink keeps
its queue, and the control API answers 503 (`StoreUnavailable`) until a probe gets through.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy import exc as sa_exc

from engine.control import metrics

log = structlog.get_logger("engine.control")

#: While the store is down, how often it is tried again (one `SELECT 1`), seconds.
PROBE_INTERVAL_S = 1.0
#: How deep an exception's chain (`__cause__`, `__context__`, `.orig`) is searched for a connection error.
_CHAIN_DEPTH = 8


def _asyncpg_connection_errors() -> tuple[type[BaseException], ...]:
    try:
        import asyncpg
    except ImportError:  # an SQLite-only install
        return ()
    e = asyncpg.exceptions
    # 08xxx connection exceptions, 57xxx operator intervention (admin shutdown, "the database system
    # is starting up"), 53xxx insufficient resources (too many connections), and a closed connection.
    return (e.PostgresConnectionError, e.OperatorInterventionError, e.InsufficientResourcesError, e.InterfaceError)


_ASYNCPG = _asyncpg_connection_errors()


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < _CHAIN_DEPTH:
        current = todo.pop(0)
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [getattr(current, "orig", None), current.__cause__, current.__context__]
    return [e for e in seen if isinstance(e, BaseException)]


def store_unavailable(exc: BaseException) -> bool:
    """True when `exc` says the database cannot be reached (connection refused, dropped, timed out,
    shutting down), not that a statement was wrong: those are answered 503 and retried later."""
    for e in _chain(exc):
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)):
            return True  # TimeoutError: no pooled connection within the pool's timeout
        if isinstance(e, (ConnectionError, TimeoutError, asyncio.TimeoutError, socket.gaierror)):
            return True
        if type(e) is OSError:  # asyncpg's "Multiple exceptions: [Errno 111] Connect call failed …"
            return True
        if _ASYNCPG and isinstance(e, _ASYNCPG):
            return True
    return False


Probe = Callable[[], Awaitable[None]]
Recovery = Callable[[], Awaitable[None]]


class StoreHealth:
    """Up or down, with the transitions logged once each; while down, a probe tries every second."""

    def __init__(self) -> None:
        self.up = True
        self.down_since = 0.0
        self.probe: Probe | None = None
        self.on_recovery: list[Recovery] = []
        self._probing: asyncio.Task[None] | None = None
        self._recovering: set[asyncio.Task[None]] = set()
        metrics.STORE_UP.set(1)

    def mark_down(self, exc: BaseException) -> None:
        if not self.up:
            return
        self.up = False
        self.down_since = time.monotonic()
        metrics.STORE_UP.set(0)
        log.error("store_down", error=f"{type(exc).__name__}: {exc}"[:500],
                  effect="deployed functions keep serving; the control API answers 503 until the store is back")
        if self.probe is not None and self._probing is None:
            try:
                self._probing = asyncio.get_running_loop().create_task(self._probe_until_up(), name="control-store-probe")
            except RuntimeError:  # no loop (a CLI): nothing to probe for
                pass

    def mark_up(self) -> None:
        if self.up:
            return
        self.up = True
        metrics.STORE_UP.set(1)
        log.info("store_up", down_s=round(time.monotonic() - self.down_since, 1),
                 effect="the control API answers again; converging on the store")
        for recover in self.on_recovery:
            task = asyncio.get_running_loop().create_task(self._recover(recover), name="control-store-recovery")
            self._recovering.add(task)
            task.add_done_callback(self._recovering.discard)

    async def _recover(self, recover: Recovery) -> None:
        try:
            await recover()
        except Exception as exc:  # down again, or the pass failed: the next one tries again
            log.warning("store_recovery_pass_failed", error=f"{type(exc).__name__}: {exc}"[:500])

    async def _probe_until_up(self) -> None:
        assert self.probe is not None
        try:
            while not self.up:
                await asyncio.sleep(PROBE_INTERVAL_S)
                try:
                    await self.probe()  # marks the store up itself when it gets through
                except Exception as exc:
                    if not store_unavailable(exc):
                        log.warning("store_probe_failed", error=f"{type(exc).__name__}: {exc}"[:500])
        finally:
            self._probing = None

    async def close(self) -> None:
        tasks = [t for t in (self._probing, *self._recovering) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
