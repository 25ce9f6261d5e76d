"""One invocation: take a worker, send `invoke`, wait for `result` within the deadline, release.

Waiting for a worker and running the handler are separate budgets: the first ends in 503
(`acquire_timeout_s`), the second in 504 (the function's time limit), after which the worker is
killed from outside.
"""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from engine import metrics, protocol, reply
from engine.errors import PoolClosed, WorkerError
from engine.project import FunctionDef
from engine.service import Service
from engine.worker import Invocation, InvocationTimeout, Worker

# After `result`, how long a worker may take to report `done` if the deadline is already close.
_DONE_GRACE_S = 1.0


class WorkerFailed(WorkerError):
    """The worker died or broke the protocol during the invocation (→ 502)."""


@dataclass
class Outcome:
    response: web.Response
    worker_id: str
    cold: bool


async def run(
    service: Service,
    function: FunctionDef,
    invocation_id: str,
    event: dict[str, Any],
    context: dict[str, str],
    *,
    acquire_timeout_s: float,
    max_log_bytes: int,
    max_response_bytes: int,
    trace: MutableMapping[str, Any] | None = None,
) -> Outcome:
    """Run one invocation; `trace` (the request) gets `worker_id` and `cold` as soon as a worker is taken."""
    pool = service.pool_for(function)
    worker, cold = await pool.acquire(acquire_timeout_s)
    loop = asyncio.get_running_loop()
    if trace is not None:  # so the invocation log line names the worker even after a 504 or 502
        trace["worker_id"], trace["cold"] = worker.id, cold
    deadline = loop.time() + service.time_limits_s[function.url_path]
    invocation = Invocation(invocation_id, service.name, function.name, max_log_bytes,
                            result=loop.create_future(), done=loop.create_future())
    frame = protocol.encode_invoke(invocation_id, function.name, event, context)
    try:
        result = await worker.invoke(frame, invocation, deadline)
    except InvocationTimeout:
        worker.mark_dead("timeout")  # removed in the background: the 504 never waits for the backend
        _count_log_bytes(invocation, None)
        raise
    except WorkerError as exc:
        worker.mark_dead(worker.death or "protocol")
        _count_log_bytes(invocation, None)
        if worker.death == "shutdown":  # removed by a hurried stop: retry elsewhere (503), not a broken worker
            raise PoolClosed("the engine is shutting down") from exc
        raise WorkerFailed(str(exc)) from exc
    except BaseException:  # cancelled: only a stopping engine cancels an invocation
        await worker.kill("shutdown")
        _count_log_bytes(invocation, None)
        raise
    response = reply.from_result(result, max_response_bytes)
    _Finish(worker, invocation, pool, max(deadline, loop.time() + _DONE_GRACE_S), loop)
    return Outcome(response, worker.id, cold)


class _Finish:
    """Waits for `done` without a task of its own: the reader resolving `done` releases the worker.

    The worker goes back to the pool only if it proved itself clean; no `done` by the deadline
    (or a dying worker) means it is discarded.
    """

    __slots__ = ("_worker", "_invocation", "_pool", "_timer", "_over")

    def __init__(self, worker: Worker, invocation: Invocation, pool: Any, deadline: float,
                 loop: asyncio.AbstractEventLoop) -> None:
        self._worker, self._invocation, self._pool, self._over = worker, invocation, pool, False
        self._timer = loop.call_at(deadline, self._end, None)
        invocation.done.add_done_callback(self._on_done)

    def _on_done(self, future: asyncio.Future[protocol.Done]) -> None:
        failed = future.cancelled() or future.exception() is not None
        self._end(None if failed else future.result())

    def _end(self, done: protocol.Done | None) -> None:
        if self._over:
            return
        self._over = True
        self._timer.cancel()
        worker = self._worker
        worker.end_invocation(self._invocation)
        _count_log_bytes(self._invocation, done)
        if done is None:
            self._pool.release(worker, clean=False, reason="dirty" if worker.alive else (worker.death or "crash"))
        else:
            self._pool.release(worker, clean=done.clean, reason="dirty")


def _count_log_bytes(invocation: Invocation, done: protocol.Done | None) -> None:
    """Handler output of one finished invocation: kept (logged) and dropped (by the engine or the runner)."""
    dropped = invocation.log_bytes_dropped + (done.log_bytes_dropped if done else 0)
    if invocation.log_bytes:
        metrics.log_bytes(invocation.service, "kept").inc(invocation.log_bytes)
    if dropped:
        metrics.log_bytes(invocation.service, "dropped").inc(dropped)
