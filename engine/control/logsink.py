"""Handler log lines and one line per invocation, copied from the engine's log into the store, per
environment, for the Logs resource (what `twilio-run logs --tail` polls).

The request path only appends to a bounded in-memory queue (`engine.logs.TAPS`, no I/O, no await);
a background task writes the queue to the store about once a second and trims each environment
to its newest `max_log_entries_per_environment` lines and to `log_retention_s`. When the queue is
full (the store is slow or down), new lines are dropped and counted, never waited for.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import delete, func, insert, select

from engine import logs as engine_logs
from engine.control import store as t
from engine.control.shapes import new_sid

log = structlog.get_logger("engine.control")

#: Lines waiting for the store at most; beyond it new lines are dropped (and counted).
MAX_PENDING_LINES = 10_000
#: How often the queue is written to the store, seconds.
FLUSH_INTERVAL_S = 1.0
_LEVELS = {"debug": "info", "info": "info", "warn": "warn", "warning": "warn", "error": "error"}


@dataclass(frozen=True)
class Served:
    """What the store needs to file a line of one deployed service."""

    account_sid: str
    service_sid: str
    environment_sid: str
    build_sid: str
    function_sids: Mapping[str, str]  # function name (URL path without "/") → ZH


def storable(text: str) -> str:
    """Text every store accepts: PostgreSQL's text holds no NUL and no database takes a lone
    surrogate (a handler may print either); one such line must not lose its whole batch."""
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


class LogSink:
    def __init__(self, store: t.Store, max_entries: int, retention_s: float) -> None:
        self.store = store
        self.max_entries = max_entries
        self.retention_s = retention_s
        self.served: dict[str, Served] = {}  # by the engine's service name (LiveDeployment.service_name)
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        self.dropped = 0
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
        await self.flush()

    def tap(self, event: Mapping[str, Any]) -> None:
        """Called for every engine log event: keep the deployed services' handler and invocation lines."""
        kind = event.get("event")
        if kind != "handler_log" and kind != "invocation":
            return
        served = self.served.get(event.get("service") or "")
        if served is None:
            return
        if len(self._pending) >= MAX_PENDING_LINES:
            self.dropped += 1
            return
        function = event.get("function")
        if kind == "handler_log":
            level = _LEVELS.get(str(event.get("stream_level")), "info")
            message = storable(str(event.get("message", ""))[:4096])
        else:
            status = event.get("status", 0)
            level = "error" if isinstance(status, int) and status >= 500 else "info"
            message = f"{event.get('method')} /{function} {status} in {event.get('duration_ms')} ms"
        invocation = event.get("invocation_id")
        self._pending.append({
            "sid": new_sid("NO"), "account_sid": served.account_sid, "service_sid": served.service_sid,
            "environment_sid": served.environment_sid, "build_sid": served.build_sid, "deployment_sid": None,
            "function_sid": served.function_sids.get(function or ""),
            "request_sid": f"RQ{invocation}" if isinstance(invocation, str) and len(invocation) == 32 else None,
            "level": level, "message": message, "date_created": t.now(),
        })

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            try:
                await self.flush()
            except Exception:  # a store outage stops logs being kept, never serving
                log.exception("log_sink_flush_failed", pending=len(self._pending))

    async def flush(self) -> None:
        if not self._pending:
            return
        batch = list(self._pending)
        self._pending.clear()
        environments = {row["environment_sid"] for row in batch}
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
        if self.dropped:
            log.warning("log_lines_dropped", dropped=self.dropped)
            self.dropped = 0
