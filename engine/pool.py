"""Warm worker pool for one (service, runtime): acquire, release, replace, reap.

One invocation per worker. `min_idle` workers are kept ready; a taken worker triggers its
replacement at once, so cold starts stay off the request path; the pool grows to `max_workers`
under load, queues at most `max_queue` requests beyond that and answers the rest with 503.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from engine import metrics, protocol
from engine.backends.base import Backend, WorkerSpec
from engine.errors import (
    AcquireTimeout,
    BootstrapError,
    EngineError,
    PoolClosed,
    PoolSaturated,
    WorkerError,
    WorkersUnavailable,
)
from engine.worker import Worker, WorkerState

log = structlog.get_logger("engine.pool")


@dataclass(frozen=True)
class PoolSettings:
    min_idle: int
    max_workers: int
    max_queue: int
    idle_timeout_s: float
    bootstrap_timeout_s: float
    max_frame_bytes: int


class Pool:
    """Workers of one service build and runtime."""

    def __init__(
        self,
        backend: Backend,
        spec: WorkerSpec,
        init: protocol.Init,
        settings: PoolSettings,
    ) -> None:
        self.backend = backend
        self.spec = spec
        self.init = init
        self.settings = settings
        self.name = f"{spec.service}/{spec.runtime}"
        self._idle: collections.deque[Worker] = collections.deque()
        self._workers: set[Worker] = set()
        self._starting = 0
        self._waiters: collections.deque[asyncio.Future[Worker]] = collections.deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._closed_because = "the engine is shutting down"
        self._failures = 0  # consecutive start failures, for back-off
        self._last_failure: str | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._labels = {"service": spec.service, "runtime": spec.runtime}
        metrics.init_pool(spec.service, spec.runtime)
        # The gauges read the pool when scraped: exact at every scrape, and no work per invocation.
        self._gauges = metrics.PoolGauges(spec.service, spec.runtime, idle=lambda: len(self._idle),
                                          busy=self._busy_count, starting=lambda: self._starting,
                                          queued=lambda: len(self._waiters))
        self._acquire_seconds = metrics.ACQUIRE_SECONDS.labels(**self._labels)
        self._cold_starts = metrics.COLD_STARTS.labels(**self._labels)

    # --- public ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin prewarming; readiness is reported by `ready`."""
        self._reaper = asyncio.create_task(self._reap_idle(), name=f"pool-reaper-{self.name}")
        self._replenish()

    @property
    def ready(self) -> bool:
        return not self._closed and len(self._idle) + self._busy_count() >= self.settings.min_idle

    def prewarm(self, workers: int) -> None:
        """Start workers now until `workers` are alive or starting (at most max_workers), so a pool that
        takes over another's traffic starts as warm as that one was; beyond min_idle they age out idle."""
        want = min(workers, self.settings.max_workers)
        while not self._closed and len(self._workers) + self._starting < want:
            self._starting += 1
            self._spawn_task(self._start_worker())

    @property
    def size(self) -> int:
        """Workers alive (idle or busy), not counting those starting."""
        return len(self._workers)

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    @property
    def start_failures(self) -> int:
        """Worker starts that failed in a row (0 once one succeeds)."""
        return self._failures

    @property
    def last_failure(self) -> str | None:
        return self._last_failure

    async def acquire(self, timeout_s: float) -> tuple[Worker, bool]:
        """A worker for one invocation, and whether the caller had to wait for a new one (cold)."""
        if self._closed:
            raise PoolClosed(self._closed_because)
        while self._idle:
            worker = self._idle.pop()  # most recently used first, so the oldest age out
            if worker.alive:
                worker.transition(WorkerState.BUSY)
                self._replenish()
                self._acquire_seconds.observe(0.0)  # a warm worker was there: no wait worth a clock read
                return worker, False
        if self._failures and not self._workers:
            # Nothing alive and the last start failed (daemon gone, image broken): answer now rather
            # than queueing for the back-off; starts keep being retried in the background.
            self._replenish()
            raise WorkersUnavailable(f"no worker of {self.name} can be started at the moment: {self._last_failure}")
        if len(self._waiters) >= self.settings.max_queue:
            metrics.QUEUE_REJECTIONS.labels(**self._labels).inc()
            raise PoolSaturated(
                f"all {self.settings.max_workers} workers of {self.name} are busy and "
                f"{self.settings.max_queue} requests are already waiting (max_workers, max_queue)"
            )
        loop = asyncio.get_running_loop()
        waited_from = loop.time()
        waiter: asyncio.Future[Worker] = loop.create_future()
        self._waiters.append(waiter)
        self._replenish()
        try:
            worker = await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
        except asyncio.TimeoutError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._offer(waiter.result())  # it arrived as we gave up: pass it on
            else:
                waiter.cancel()
            raise AcquireTimeout(
                f"no worker of {self.name} became free within acquire_timeout_s={timeout_s:g}s"
                + (f" (last start failure: {self._last_failure})" if self._last_failure else "")
            ) from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        worker.transition(WorkerState.BUSY)
        self._acquire_seconds.observe(loop.time() - waited_from)
        cold = worker.invocations == 0  # it waited for a new worker, not for a busy one to come back
        if cold:
            self._cold_starts.inc()
        return worker, cold

    def release(self, worker: Worker, clean: bool, reason: str = "dirty") -> None:
        """Back to the pool if clean and alive; otherwise killed and replaced in the background."""
        if worker.alive and clean and not self._closed:
            worker.transition(WorkerState.IDLE)
            self._offer(worker)
        else:
            self._spawn_task(self._discard(worker, reason))

    def discard(self, worker: Worker, reason: str) -> None:
        self._spawn_task(self._discard(worker, reason))

    async def close(self, reason: str = "the engine is shutting down") -> None:
        """Refuse new work, fail waiters (with `reason`), kill every worker."""
        self._closed = True
        self._closed_because = reason
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(PoolClosed(reason))
        self._waiters.clear()
        if self._reaper:
            self._reaper.cancel()
        workers = list(self._workers)
        await asyncio.gather(*(w.kill("shutdown") for w in workers), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._idle.clear()
        self._gauges.close()

    # --- internals ------------------------------------------------------------------------

    def _busy_count(self) -> int:
        return sum(1 for w in self._workers if w.state is WorkerState.BUSY)

    def _offer(self, worker: Worker) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(worker)
                return
        self._idle.append(worker)

    def _replenish(self) -> None:
        """Start workers for waiters beyond those already starting, and up to min_idle idle."""
        if self._closed:
            return
        while len(self._workers) + self._starting < self.settings.max_workers:
            want_for_waiters = len(self._waiters) > self._starting
            want_for_idle = len(self._idle) + self._starting < self.settings.min_idle
            if not (want_for_waiters or want_for_idle):
                break
            self._starting += 1
            self._spawn_task(self._start_worker())

    async def _start_worker(self) -> None:
        if self._failures:
            await asyncio.sleep(min(5.0, 0.2 * 2 ** min(self._failures, 5)))
        started = time.monotonic()
        worker: Worker | None = None
        try:
            channel = await self.backend.spawn(self.spec, self.settings.max_frame_bytes)
            worker = Worker(channel, self.spec.service, self._worker_died)
            ready = await worker.bootstrap(self.init, self.settings.bootstrap_timeout_s)
        except (EngineError, OSError) as exc:
            self._starting -= 1
            self._failures += 1
            self._last_failure = str(exc)
            log.error("worker_start_failed", pool=self.name, error=str(exc), attempt=self._failures)
            if isinstance(exc, BootstrapError) and worker is not None:
                stderr = worker.channel.stderr_tail()
                if stderr:
                    log.error("worker_stderr", pool=self.name, stderr=stderr[-4000:])
            self._fail_waiters_if_hopeless(exc)
            self._replenish()
            return
        except asyncio.CancelledError:
            self._starting -= 1
            if worker is not None:
                await worker.kill("shutdown")
            raise
        self._starting -= 1
        self._failures = 0
        self._last_failure = None
        duration = time.monotonic() - started
        metrics.BOOTSTRAP_SECONDS.labels(**self._labels).observe(duration)
        if self._closed:
            await worker.kill("shutdown")
            return
        self._workers.add(worker)
        log.info("worker_ready", pool=self.name, worker_id=worker.id, bootstrap_ms=round(duration * 1000, 1),
                 load_errors=ready.load_errors or None)
        self._offer(worker)

    def _fail_waiters_if_hopeless(self, exc: Exception) -> None:
        """With nothing alive or starting, waiters would only time out: tell them now why."""
        if self._workers or self._starting:
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(WorkerError(f"no worker of {self.name} could be started: {exc}"))

    async def _discard(self, worker: Worker, reason: str) -> None:
        await worker.kill(reason)
        self._workers.discard(worker)
        self._replenish()

    def _worker_died(self, worker: Worker) -> None:
        """Called once per worker when it reaches DEAD, whoever noticed."""
        reason = metrics.worker_exited(self.spec.service, self.spec.runtime, worker.death)
        self._workers.discard(worker)
        try:
            self._idle.remove(worker)
        except ValueError:
            pass
        log.info("worker_exit", pool=self.name, worker_id=worker.id, reason=reason,
                 invocations=worker.invocations)
        self._replenish()

    async def _reap_idle(self) -> None:
        interval = max(0.5, min(30.0, self.settings.idle_timeout_s / 4))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            while len(self._idle) > self.settings.min_idle:
                oldest = self._idle[0]
                if now - oldest.idle_since < self.settings.idle_timeout_s:
                    break
                self._idle.popleft()
                await oldest.kill("idle_reaped")

    def _spawn_task(self, coro: object) -> None:
        task = asyncio.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


PoolFactory = Callable[[WorkerSpec, protocol.Init], Pool]
