"""Handler log lines and one line per invocation, copied from the engine's log into the store, per
environment, for the Logs resource (what `twilio-run logs --tail` polls).

The request path only appends to a bounded in-memory queue (`engine.logs.TAPS`, no I/O, no await);
a background task writes the queue to the store in one batch about once a second and trims each
environment to its newest `max_log_entries_per_environment` lines and to `log_retention_s`.

The queue is bounded per environment (`max_pending_log_lines_per_environment`, so one chatty
environment cannot take another's room) and in total (`max_pending_log_lines`). When a bound is
reached, new lines are dropped and counted (`functions_engine_log_lines_dropped_total`), never
waited for. Lines leave the queue only once the store has committed them: through an outage the
oldest lines are kept and written when the store is back.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import delete, func, insert, select

from engine import logs as engine_logs
from engine.control import metrics
from engine.control import store as t
from engine.control.errors import StoreUnavailable
from engine.control.shapes import new_sid

log = structlog.get_logger("engine.control")

#: How often the queue is written to the store, seconds.
FLUSH_INTERVAL_S = 1.0
#: At shutdown, how long the last write may take before the lines still queued are given up, seconds.
CLOSE_FLUSH_S = 5.0
_LEVELS = {"debug": "info", "info": "info", "warn": "warn", "warning": "warn", "error": "error"}


@dataclass(frozen=True)
class Served:
    """What the store needs to file a line of one deployed service."""

    account_sid: str
    service_sid: str
    environment_sid: str
    build_sid: str
    function_sids: Mapping[str, str]  # function name (URL path without "/") → ZH


class LogSink:
    """The bounded queue between the engine's log and the store's Logs table."""

    def __init__(self, store: t.Store, max_entries: int, retention_s: float,
                 max_pending: int = 10_000, max_pending_per_environment: int = 2_000) -> None:
        self.store = store
        self.max_entries = max_entries
        self.retention_s = retention_s
        self.max_pending = max_pending
        self.max_pending_per_environment = max_pending_per_environment
        self.served: dict[str, Served] = {}  # by the engine's service name (LiveDeployment.service_name)
        self._pending: dict[str, collections.deque[dict[str, Any]]] = {}  # environment → its lines, oldest first
        self.pending = 0  # lines in `_pending`, all environments
        self.dropped: collections.Counter[str] = collections.Counter()  # since the last warning, by reason
        self._flushing = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        engine_logs.TAPS.append(self.tap)
        self._task = asyncio.create_task(self._run(), name="control-log-sink")

    async def close(self) -> None:
        if self.tap in engine_logs.TAPS:
            engine_logs.TAPS.remove(self.tap)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await asyncio.wait_for(self.flush(), CLOSE_FLUSH_S)
        except Exception as exc:  # the store is down at shutdown: say what is lost
            log.warning("log_lines_lost_at_shutdown", lines=self.pending, error=f"{type(exc).__name__}: {exc}"[:300])

    def _drop(self, reason: str, lines: int = 1) -> None:
        self.dropped[reason] += lines
        metrics.LOG_LINES_DROPPED.labels(reason).inc(lines)

    def tap(self, event: Mapping[str, Any]) -> None:
        """Called for every engine log event: keep the deployed services' handler and invocation lines."""
        kind = event.get("event")
        if kind != "handler_log" and kind != "invocation":
            return
        served = self.served.get(event.get("service") or "")
        if served is None:
            return
        queue = self._pending.get(served.environment_sid)
        if queue is not None and len(queue) >= self.max_pending_per_environment:
            self._drop("environment_full")
            return
        if self.pending >= self.max_pending:
            self._drop("queue_full")
            return
        function = event.get("function")
        if kind == "handler_log":
            level = _LEVELS.get(str(event.get("stream_level")), "info")
            message = str(event.get("message", ""))[:4096]
        else:
            status = event.get("status", 0)
            level = "error" if isinstance(status, int) and status >= 500 else "info"
            message = f"{event.get('method')} /{function} {status} in {event.get('duration_ms')} ms"
        invocation = event.get("invocation_id")
        if queue is None:
            queue = self._pending[served.environment_sid] = collections.deque()
        queue.append({
            "sid": new_sid("NO"), "account_sid": served.account_sid, "service_sid": served.service_sid,
            "environment_sid": served.environment_sid, "build_sid": served.build_sid, "deployment_sid": None,
            "function_sid": served.function_sids.get(function or ""),
            "request_sid": f"RQ{invocation}" if isinstance(invocation, str) and len(invocation) == 32 else None,
            "level": level, "message": message, "date_created": t.now(),
        })
        self.pending += 1

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                await self.flush()
            except StoreUnavailable:  # store_down said so once; the lines stay queued for the next try
                pass
            except Exception:  # the store refused the batch itself: it was dropped and counted
                log.exception("log_sink_flush_failed", pending=self.pending)

    async def flush(self) -> None:
        """Write every queued line in one transaction; they leave the queue only once it commits.

        Lines tapped meanwhile queue behind them. `StoreUnavailable`: all kept, for the next try;
        any other error: that batch is dropped (counted as `store_error`) so it cannot wedge the queue."""
        async with self._flushing:
            taken = {env: len(queue) for env, queue in self._pending.items() if queue}
            if taken:
                batch = [row for env, n in taken.items() for row in itertools.islice(self._pending[env], n)]
                try:
                    await self._write(batch, set(taken))
                except StoreUnavailable:
                    raise
                except Exception:
                    self._release(taken)
                    self._drop("store_error", len(batch))
                    raise
                self._release(taken)
        if self.dropped:
            log.warning("log_lines_dropped", **dict(self.dropped), pending=self.pending)
            self.dropped.clear()

    def _release(self, taken: Mapping[str, int]) -> None:
        for env, n in taken.items():
            queue = self._pending[env]
            for _ in range(n):
                queue.popleft()
            self.pending -= n
            if not queue:
                del self._pending[env]

    async def _write(self, batch: list[dict[str, Any]], environments: set[str]) -> None:
        async with self.store.begin() as conn:
            live = set((await conn.scalars(select(t.environments.c.sid).where(t.environments.c.sid.in_(environments)))).all())
            rows = [row for row in batch if row["environment_sid"] in live]  # an environment deleted meanwhile
            if rows:
                await conn.execute(insert(t.logs), rows)
            cutoff = t.now() - timedelta(seconds=self.retention_s)
            for env in live:
                await conn.execute(delete(t.logs).where(t.logs.c.environment_sid == env, t.logs.c.date_created < cutoff))
                count = await conn.scalar(select(func.count()).select_from(t.logs).where(t.logs.c.environment_sid == env))
                if count > self.max_entries:
                    oldest_kept = await conn.scalar(
                        select(t.logs.c.seq).where(t.logs.c.environment_sid == env)
                        .order_by(t.logs.c.seq.desc()).offset(self.max_entries - 1).limit(1))
                    await conn.execute(delete(t.logs).where(t.logs.c.environment_sid == env, t.logs.c.seq < oldest_kept))
