"""Warm worker pool for one (service, runtime): acquire, release, replace, reap.

One invocation per worker. `min_idle` workers are kept ready; a taken worker triggers its
replacement at once, so cold starts stay off the request path; the pool grows to `max_workers`
under load, queues at most `max_queue` requests beyond that and answers the rest with 503.

A pool is one tenant's and must not cost the others: it has at most `max_lifecycle_calls` worker
starts in flight on the backend (and as many removals and exit checks), a start whose turn comes
when nobody needs it any more is dropped, and when its workers cannot start or keep dying young
the next start waits (growing, capped at `crash_backoff_max_s`) while its requests are answered
at once with the reason. Each worker has a bounded life (`max_worker_invocations`,
`max_worker_age_s`), so whatever a handler left in it that no check can see does not last.
"""

from __future__ import annotations

import asyncio
import collections
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from engine import metrics, protocol
from engine.backends.base import Backend, WorkerSpec
from engine.image_queue import ImageJob
from engine.quota import WorkerQuota
from engine.errors import (
    AcquireTimeout,
    EngineError,
    PoolClosed,
    PoolSaturated,
    WorkersUnavailable,
)
from engine.warmth import WarmBudget
from engine.worker import Worker, WorkerState

log = structlog.get_logger("engine.pool")

#: How long a closing pool of a deployed service holds its account-quota places for its containers
#: to be removed (then they are released; the backend goes on removing).
_QUOTA_RELEASE_WAIT_S = 10.0


@dataclass(frozen=True)
class PoolSettings:
    min_idle: int
    max_workers: int
    max_queue: int
    idle_timeout_s: float
    bootstrap_timeout_s: float
    max_frame_bytes: int
    max_worker_invocations: int = 10_000  # then the worker is retired after its invocation
    max_worker_age_s: float = 3600.0  # then the worker is retired after its invocation (or while idle)
    max_lifecycle_calls: int = 2  # backend starts in flight for this pool, and as many removals/exit checks
    crash_backoff_max_s: float = 10.0  # longest wait before a start after failed starts or young deaths
    # The warm budget (engine/warmth.py), when the pool has one: what an idle worker costs it, whether
    # min_idle is pinned (kept whatever the traffic), and how long after its last call it goes cold.
    memory_mb: int = 256
    pinned: bool = False
    scale_to_zero_after_s: float = math.inf
    # A request to a pool whose image is still being built waits this long for it (a cold start), then 503.
    build_wait_timeout_s: float = 600.0


#: The first back-off step; each further failure or young death doubles it, up to crash_backoff_max_s.
_BACKOFF_FIRST_S = 0.2
#: Workers in a row that die young before the pool counts as crash-looping (one at a time, 503 at once):
#: a single crash (a handler that ran out of memory once) only delays the next start a little.
CRASH_LOOP_DEATHS = 3


class Pool:
    """Workers of one service build and runtime."""

    def __init__(
        self,
        backend: Backend,
        spec: WorkerSpec,
        init: protocol.Init,
        settings: PoolSettings,
        budget: WarmBudget | None = None,
        quota: WorkerQuota | None = None,
        image: ImageJob | None = None,
    ) -> None:
        """`quota`: the account's worker quota this pool shares with its other pools (deployments).
        `image`: the build of the image its workers run, when it is not built yet (engine/image_queue.py);
        its first start waits for it, and a build that fails is this pool's failure alone."""
        self.backend = backend
        self._image = image
        self._spec_ready = image is None  # `spec` names the image to run (set from the build once it is done)
        self._build_failure: str | None = None  # the image could not be built: every request is a 503 naming it
        self.quota = quota
        self._quota_denied = False  # the last start wanted was refused by the quota
        # Without a budget the pool keeps min_idle warm for ever; with one, warmth follows traffic.
        self._budget = budget
        self.last_used: float | None = None  # monotonic time of the last call (or of the warm start)
        self.spec = spec
        self.init = init
        self.settings = settings
        self.name = f"{spec.service}/{spec.runtime}"
        self._idle: collections.deque[Worker] = collections.deque()
        self._workers: set[Worker] = set()
        self._starting = 0
        # Dead workers whose container (or process) is not gone yet: they count against max_workers
        # until it is, so a tenant cannot run more than max_workers by timing out.
        self._removing: set[Worker] = set()
        self._waiters: collections.deque[asyncio.Future[Worker]] = collections.deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._prewarm_to = 0  # workers `prewarm` asked for (a pool taking over another's traffic)
        self._closed_because = "the engine is shutting down"
        self._failures = 0  # consecutive start failures, for back-off
        self._last_failure: str | None = None
        self._crashes = 0  # workers in a row that died by themselves before finishing an invocation
        self._last_crash: str | None = None
        self._next_start = 0.0  # loop time before which no start begins (the back-off), for Retry-After
        self._settled = False  # the warm-up is over: min_idle reached once, or a start failed
        self._retry_now = asyncio.Event()  # cuts a back-off short (the backend is back)
        # This pool's share of the backend's calls: starts, and apart from them removals and exit
        # checks, so a 504's removal or a crash's 502 never waits behind a queue of starts.
        self._start_slots = asyncio.Semaphore(settings.max_lifecycle_calls)
        self._stop_slots = asyncio.Semaphore(settings.max_lifecycle_calls)
        self._reaper: asyncio.Task[None] | None = None
        self._labels = {"service": spec.service, "runtime": spec.runtime}
        metrics.init_pool(spec.service, spec.runtime)
        # The gauges read the pool when scraped: exact at every scrape, and no work per invocation.
        self._gauges = metrics.PoolGauges(spec.service, spec.runtime, idle=lambda: len(self._idle),
                                          busy=self._busy_count, starting=lambda: self._starting,
                                          removing=lambda: len(self._removing), queued=lambda: len(self._waiters),
                                          healthy=lambda: 0 if self.failing else 1)
        self._start_failures = metrics.START_FAILURES.labels(**self._labels)
        self._acquire_seconds = metrics.ACQUIRE_SECONDS.labels(**self._labels)
        self._cold_starts = metrics.COLD_STARTS.labels(**self._labels)

    # --- public ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin prewarming; readiness is reported by `ready`."""
        if self.quota is not None:
            self.quota.pools.add(self)
        if self._image is not None and not self._image.done:
            # A build that fails with nobody waiting still marks the pool failing at once (readiness, metrics).
            self._image.future.add_done_callback(self._image_done)
        if self._budget is not None:
            # Warm now if pinned or if min_idle fits in the budget, else cold until called. A pinned
            # floor that does not fit is a ConfigError here, before anything is started.
            warm = self._budget.join(self, self.spec.service, self.spec.runtime)
            self.last_used = time.monotonic() if warm else None
        self._reaper = asyncio.create_task(self._reap_idle(), name=f"pool-reaper-{self.name}")
        self._replenish()

    @property
    def ready(self) -> bool:
        """It holds its minimum of warm workers now (none for a pool gone cold)."""
        return not self._closed and len(self._idle) + self._busy_count() >= self.warm_target()

    # --- the warm budget's view (engine/warmth.py WarmMember) ------------------------------

    def warm_target(self) -> int:
        """Idle workers to keep now: min_idle while pinned or called within scale_to_zero_after_s, else 0."""
        s = self.settings
        if self._budget is None or s.pinned:
            return s.min_idle
        if self.last_used is None or time.monotonic() - self.last_used >= s.scale_to_zero_after_s:
            return 0
        return s.min_idle

    @property
    def warm_cost_mb(self) -> int:
        return self.settings.memory_mb

    @property
    def warm_want(self) -> int:
        """Idle workers it keeps while called (min_idle), for the budget's decision at start."""
        return self.settings.min_idle

    @property
    def warm_floor(self) -> int:
        return self.settings.min_idle if self.settings.pinned else 0

    @property
    def warm_held(self) -> int:
        """Idle workers, starts meant to become idle (a failing pool's probes are not counted), and
        busy workers up to the warm target: a pool keeps its warm place while that worker serves."""
        starting_for_idle = 0 if self.failing else max(0, self._starting - len(self._waiters))
        busy = min(self._busy_count(), self.warm_target()) if self._workers else 0
        return len(self._idle) + starting_for_idle + busy

    @property
    def warm_short(self) -> bool:
        """It holds fewer places than its warm target: it may take room from pools called less recently.
        A pool at its target (a replacement for a taken worker) only gets free room."""
        return self.warm_held < self.warm_target()

    @property
    def evictable(self) -> int:
        return max(0, len(self._idle) - self.warm_floor)

    def evict_idle(self) -> bool:
        """Stop the idle worker that waited longest (the budget needs its place)."""
        if self.evictable <= 0:
            return False
        worker = self._idle.popleft()
        self._spawn_task(self._discard(worker, "evicted"))
        return True

    def inherit_warmth(self, previous: Pool) -> None:
        """A pool replacing `previous` (a new build of the same service) takes over its recency, so
        the warm budget treats the traffic it takes over as its own."""
        self.last_used = previous.last_used
        if self._budget is not None and previous.last_used is not None:
            self._budget.touch(self)
        self._replenish()

    def _sync_budget(self) -> None:
        if self._budget is not None:
            self._budget.sync(self)

    @property
    def settled(self) -> bool:
        """Its warm-up is over: it reached min_idle, or a start failed (for readiness at start-up and after an outage)."""
        return self._settled or self.ready

    @property
    def failing(self) -> bool:
        """Its last start failed, or its workers keep dying before finishing an invocation."""
        return self._failures > 0 or self._crashes >= CRASH_LOOP_DEATHS or self._build_failure is not None

    @property
    def image_job(self) -> ImageJob | None:
        """The build its workers wait for, when the pool was made before its image (lazy), else None:
        whoever routed it lazily learns from it whether the image could be built."""
        return self._image

    @property
    def image_built(self) -> bool:
        """Its image is there (built, found, or none needed)."""
        if self._image is None:
            return True
        future = self._image.future
        return future.done() and not future.cancelled() and future.exception() is None

    def rewarm(self) -> None:
        """The backend is back after an outage: retry starts now, and count as warming until one ends."""
        self._settled = False
        self._retry_now.set()
        self._retry_now = asyncio.Event()
        self._replenish()

    def prewarm(self, workers: int) -> None:
        """Start workers now until `workers` are alive or starting (at most max_workers), so a pool that
        takes over another's traffic starts as warm as that one was; beyond min_idle they age out idle."""
        want = min(workers, self.settings.max_workers)
        self._prewarm_to = max(self._prewarm_to, want)  # so `_still_wanted` keeps these starts
        while not self._closed and len(self._workers) + self._starting < want:
            if self.quota is not None and not self.quota.room():
                break  # the account's quota: the extra workers are not started
            self._starting += 1
            self._spawn_task(self._start_worker())

    @property
    def size(self) -> int:
        """Workers alive (idle or busy), not counting those starting."""
        return len(self._workers)

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    # --- the account's worker quota (engine/quota.py) ----------------------------------------

    @property
    def held(self) -> int:
        """Places this pool holds against its quota: workers alive, starting, or not yet removed."""
        return len(self._workers) + self._starting + len(self._removing)

    @property
    def wants_workers(self) -> bool:
        """Requests are waiting for workers beyond those starting, or it is still warming (a new
        deployment): either comes before a sibling's min_idle when the quota has one place."""
        if self._closed:
            return False
        return len(self._waiters) > self._starting or (not self._settled and len(self._idle) + self._starting < self.warm_target())

    def retry_starts(self) -> None:
        """The quota has room again: start what was denied."""
        self._replenish()

    def evict_for_quota(self) -> Worker | None:
        """Stop the oldest idle worker: a sibling pool of the account needs its place more."""
        if self._closed or not self._idle:
            return None
        worker = self._idle.popleft()
        self._sync_budget()
        self._spawn_task(self._discard(worker, "evicted"))
        return worker

    def _quota_freed(self, worker: Worker | None = None) -> None:
        if self.quota is not None:
            self.quota.freed(worker)

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
        if self._budget is not None:
            self.last_used = time.monotonic()
            self._budget.touch(self)
        if self._image is not None and not self._image.done:
            await self._wait_for_image()
        if self._build_failure is not None:
            raise self._unavailable()
        while self._idle:
            worker = self._idle.pop()  # most recently used first, so the oldest age out
            if worker.alive:
                worker.transition(WorkerState.BUSY)
                self._replenish()
                self._acquire_seconds.observe(0.0)  # a warm worker was there: no wait worth a clock read
                return worker, False
        if self.failing and not self._workers:
            # Nothing alive and the last start failed (daemon gone, code that exits at import) or
            # the last workers died young: answer now rather than queueing for the back-off;
            # starts keep being retried in the background.
            self._replenish()
            raise self._unavailable()
        if self._removing and not self._workers and not self._starting:
            down = self.backend.unavailable()
            if down:  # every free place is held by a dead worker the backend cannot remove now
                raise WorkersUnavailable(f"no worker of {self.name} can be started at the moment: {down}")
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
            quota = (f"; {self.quota.describe()}" if self.quota is not None and self._quota_denied
                     and not self.quota.room() else "")
            raise AcquireTimeout(
                f"no worker of {self.name} became free within acquire_timeout_s={timeout_s:g}s"
                + (f" (last start failure: {self._last_failure})" if self._last_failure else "") + quota
            ) from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        worker.transition(WorkerState.BUSY)
        self._sync_budget()  # a new worker is busy here: it holds the pool's warm place from now
        self._acquire_seconds.observe(loop.time() - waited_from)
        cold = worker.invocations == 0  # it waited for a new worker, not for a busy one to come back
        if cold:
            self._cold_starts.inc()
        return worker, cold

    def _image_done(self, future: asyncio.Future[WorkerSpec]) -> None:
        if not self._closed and not future.cancelled() and future.exception() is not None:
            self._record_build_failure(future.exception())  # type: ignore[arg-type]

    async def _wait_for_image(self) -> None:
        """A request for a pool whose image is not built yet: wait for the build (first in the queue from
        now), at most build_wait_timeout_s; a failed build is recorded and answered by the caller."""
        assert self._image is not None
        limit = self.settings.build_wait_timeout_s
        try:
            async with asyncio.timeout(limit):
                await self._image.wait()
        except TimeoutError:
            exc = AcquireTimeout(
                f"the image of service {self.spec.service} ({self.spec.runtime} runtime) is still being built "
                f"after build_wait_timeout_s={limit:g}s; the build goes on, retry later")
            exc.retry_after_s = 5
            raise exc from None
        except EngineError as exc:
            self._record_build_failure(exc)

    def _record_build_failure(self, exc: Exception) -> None:
        if self._build_failure is None:
            self._build_failure = str(exc)
            self._settled = True
            self._start_failures.inc()
            log.error("worker_start_failed", pool=self.name, error=self._build_failure, attempt=1, step="image build")
            self._fail_waiters()

    def release(self, worker: Worker, clean: bool, reason: str = "dirty") -> None:
        """Back to the pool if clean and alive; otherwise killed and replaced in the background.

        A worker past its lifetime bound is retired here, after its invocation answered.
        """
        if worker.alive and clean and not self._closed:
            self._crashes = 0  # a worker finished an invocation: whatever crash loop there was is over
            if self._past_lifetime(worker, time.monotonic()):
                self._spawn_task(self._discard(worker, "retired"))
                return
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
        if self._image is not None:
            self._image.cancel()  # not started yet: nobody needs it any more
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(PoolClosed(reason))
        self._waiters.clear()
        if self._budget is not None:
            self._budget.leave(self)
        if self._reaper:
            self._reaper.cancel()
        workers = list(self._workers)
        await asyncio.gather(*(w.kill("shutdown") for w in workers), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._idle.clear()
        self._gauges.close()
        if self.quota is not None:
            # The account's places stay held until the containers are gone, not just killed: a
            # redeploy at the quota must not start the new build's worker beside the old one's.
            try:
                async with asyncio.timeout(_QUOTA_RELEASE_WAIT_S):
                    await asyncio.gather(*(w.channel.wait_removed() for w in workers), return_exceptions=True)
            except TimeoutError:
                log.warning("pool_close_removal_slow", pool=self.name, waited_s=_QUOTA_RELEASE_WAIT_S)
            self.quota.pools.discard(self)
            self.quota.freed()

    # --- internals ------------------------------------------------------------------------

    def _busy_count(self) -> int:
        return sum(1 for w in self._workers if w.state is WorkerState.BUSY)

    def _past_lifetime(self, worker: Worker, now: float) -> bool:
        return worker.invocations >= self.settings.max_worker_invocations or now >= worker.retire_at

    def _backoff_s(self) -> float:
        """How long the next start waits: 0 when healthy, else doubling per failure, capped."""
        streak = max(self._failures, self._crashes)
        if not streak:
            return 0.0
        return min(self.settings.crash_backoff_max_s, _BACKOFF_FIRST_S * 2 ** min(streak - 1, 16))

    def _unavailable(self) -> WorkersUnavailable:
        """The 503 for a pool that has no worker and cannot get one now, naming why."""
        if self._build_failure is not None:
            exc = WorkersUnavailable(
                f"the service's image could not be built: {self._build_failure}; the engine log has the build "
                f"output (image_build_failed); fix the project and deploy it again (or restart the engine)")
            exc.retry_after_s = 60
            return exc
        wait_s = max(0.0, self._next_start - asyncio.get_running_loop().time())
        if self._failures:
            what = (f"the function's worker could not start: {self._last_failure} "
                    f"({self._failures} attempt{'s' if self._failures > 1 else ''} in a row")
        else:
            what = (f"the function's workers keep dying before finishing an invocation: {self._last_crash} "
                    f"({self._crashes} in a row")
        exc = WorkersUnavailable(
            f"{what}; service {self.spec.service}, {self.spec.runtime} runtime; the engine log has the "
            f"worker's stderr; a new worker is tried in the background, next in {wait_s:.1f} s)"
        )
        exc.retry_after_s = max(1, math.ceil(wait_s))
        return exc

    def _offer(self, worker: Worker) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(worker)
                return
        self._idle.append(worker)
        self._sync_budget()
        if self.quota is not None:
            self.quota.idle_appeared(self)

    def _replenish(self) -> None:
        """Start workers for waiters beyond those already starting, and up to min_idle idle.

        While the pool is failing, one start at a time (a probe): if it fails or dies young too,
        the others would have as well, each at the cost of backend calls everyone shares.
        """
        if self._closed or self._build_failure is not None:
            return
        target = self.warm_target()
        at_once = 1 if self.failing else self.settings.max_workers
        # A dead worker holds its place until the backend says it is gone (`_removing`).
        while (len(self._workers) + self._starting + len(self._removing) < self.settings.max_workers
               and self._starting < at_once):
            want_for_waiters = len(self._waiters) > self._starting
            if not want_for_waiters:
                if len(self._idle) + self._starting >= target:
                    break
                # No room in the warm budget: this pool stays cold until called. A failing pool's
                # probe (one at a time, backed off) asks no room: it is not counted until it is idle.
                if self._budget is not None and not self.failing and not self._budget.admit(self):
                    self._settled = True  # its warm-up is over: it holds what the budget allows
                    break
            urgent = want_for_waiters or not self._settled
            if self.quota is not None and not self.quota.room(self, urgent):
                self._quota_denied = True
                # A waiting request, or a pool still warming (a new deployment), may take an idle
                # sibling's place; a settled pool's min_idle never does (no two pools swapping places).
                if urgent:
                    self.quota.make_room(self)
                break
            self._quota_denied = False
            self._starting += 1
            self._spawn_task(self._start_worker())
            self._sync_budget()
        self._sync_budget()

    async def _start_worker(self) -> None:
        worker: Worker | None = None
        if self._image is not None and not self._spec_ready:
            try:
                self.spec = await self._image.wait()
                self._spec_ready = True
            except EngineError as exc:
                self._starting -= 1
                self._record_build_failure(exc)
                self._sync_budget()
                self._quota_freed()
                return
            except asyncio.CancelledError:
                self._starting -= 1
                raise
        try:
            delay = self._backoff_s()
            if delay:
                loop = asyncio.get_running_loop()
                self._next_start = max(self._next_start, loop.time() + delay)
                try:
                    await asyncio.wait_for(self._retry_now.wait(), delay)
                except TimeoutError:
                    pass
            started = time.monotonic()
            async with self._start_slots:
                if not self._still_wanted():  # its turn came after the burst that asked for it was served
                    self._starting -= 1
                    self._sync_budget()
                    self._quota_freed()
                    return
                channel = await self.backend.spawn(self.spec, self.settings.max_frame_bytes)
            worker = Worker(channel, self.spec.service, self._worker_died, self._stop_slots)
            # Up to 10 % early, so workers started together (at start-up, after a burst) do not all
            # retire in the same moment and leave the pool cold.
            worker.retire_at = worker.started_at + self.settings.max_worker_age_s * random.uniform(0.9, 1.0)
            ready = await worker.bootstrap(self.init, self.settings.bootstrap_timeout_s)
        except (EngineError, OSError) as exc:
            self._starting -= 1
            self._failures += 1
            self._settled = True
            self._last_failure = str(exc)
            self._start_failures.inc()
            stderr = worker.channel.stderr_tail()[-4000:] if worker is not None else ""
            log.error("worker_start_failed", pool=self.name, error=str(exc), attempt=self._failures,
                      stderr=stderr or None)
            self._fail_waiters_if_hopeless()
            self._replenish()
            self._quota_freed()
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
        if len(self._workers) >= self.warm_target():
            self._settled = True
        log.info("worker_ready", pool=self.name, worker_id=worker.id, bootstrap_ms=round(duration * 1000, 1),
                 load_errors=ready.load_errors or None)
        self._offer(worker)

    def _still_wanted(self) -> bool:
        """Whether a start under way (counted in `_starting`) is still needed: `_replenish`'s test, itself included."""
        if self._closed:
            return False
        keep = max(self.warm_target(), self._prewarm_to - len(self._workers) + len(self._idle))
        return len(self._waiters) >= self._starting or len(self._idle) + self._starting <= keep

    def _fail_waiters_if_hopeless(self) -> None:
        """With nothing alive or starting, waiters would only time out: tell them now why."""
        if not (self._workers or self._starting):
            self._fail_waiters()

    def _fail_waiters(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(self._unavailable())

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
        if reason in ("crash", "oom", "protocol") and worker.ready is not None and worker.invocations <= 1:
            # It started, then died by itself before finishing one invocation (a failed start is
            # counted apart, as `_failures`): a crash loop slows its own restarts,
            # and with nothing left alive its waiting requests are answered now rather than at timeout.
            self._crashes += 1
            self._last_crash = worker.death_detail or reason
            self._next_start = max(self._next_start, asyncio.get_running_loop().time() + self._backoff_s())
            if self.failing and not self._workers:
                self._fail_waiters()
        log.info("worker_exit", pool=self.name, worker_id=worker.id, reason=reason,
                 invocations=worker.invocations)
        self._removing.add(worker)
        self._spawn_task(self._until_removed(worker))
        self._replenish()

    async def _until_removed(self, worker: Worker) -> None:
        """Hold the dead worker's place in max_workers until the backend says it is gone."""
        try:
            await worker.kill(worker.death or "crash")  # the first attempt, within this pool's budget
            await worker.channel.wait_removed()
        finally:
            self._removing.discard(worker)
            self._replenish()
            self._quota_freed(worker)

    async def _reap_idle(self) -> None:
        """Stop idle workers above min_idle after idle_timeout_s, all of them once the pool has not
        been called for scale_to_zero_after_s (with a budget), and retire idle ones past their age."""
        shortest = min(self.settings.idle_timeout_s, self.settings.max_worker_age_s, self.settings.scale_to_zero_after_s)
        interval = max(0.5, min(30.0, shortest / 4))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            target = self.warm_target()
            if target < self.settings.min_idle and len(self._idle) > target and self._budget is not None:
                cold = [self._idle.popleft() for _ in range(len(self._idle) - target)]
                self._sync_budget()
                self._budget.scaled_to_zero(len(cold))
                log.info("pool_scaled_to_zero", pool=self.name, workers=len(cold),
                         scale_to_zero_after_s=self.settings.scale_to_zero_after_s)
                for worker in cold:
                    self._spawn_task(self._discard(worker, "idle_reaped"))
            while len(self._idle) > target:
                oldest = self._idle[0]
                if now - oldest.idle_since < self.settings.idle_timeout_s:
                    break
                self._idle.popleft()
                self._sync_budget()
                await oldest.kill("idle_reaped")
            for worker in [w for w in self._idle if self._past_lifetime(w, now)]:
                self._idle.remove(worker)
                self._spawn_task(self._discard(worker, "retired"))
            self._sync_budget()

    def _spawn_task(self, coro: object) -> None:
        task = asyncio.create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


PoolFactory = Callable[[WorkerSpec, protocol.Init], Pool]
