"""Service images built in the background, a few at a time, the ones requests wait for first.

An engine with hundreds of services must not build every image before it opens its port: it
opens it, and the images are built here, at most `max_parallel_image_builds` at once (a build
is CPU and disk: pip or npm on the host, then `docker build`). Jobs run in the order they were
given (the pools warmed at start first), except that a job a request waits for (`demand`) goes
before every job nobody waits for yet. A job that fails fails alone: its pool answers 503 naming
the service and the step, the others go on.

A finished job keeps its result (the spec with the image to run, or the error) for whoever asks.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

import structlog

from engine.backends.base import WorkerSpec
from engine.errors import BackendError, EngineError, ImageBuildError

log = structlog.get_logger("engine.images")

Prepare = Callable[[WorkerSpec], Awaitable[WorkerSpec]]


class ImageJob:
    """One pool's image: queued, building, or done (a spec with its image, or the error)."""

    def __init__(self, queue: ImageQueue, spec: WorkerSpec, order: int) -> None:
        self._queue = queue
        self.spec = spec
        self.order = order
        self.demanded = False
        self.started = False
        self.future: asyncio.Future[WorkerSpec] = asyncio.get_running_loop().create_future()
        # Retrieved once here so a failure nobody awaited is not reported as "never retrieved".
        self.future.add_done_callback(lambda f: f.cancelled() or f.exception())

    @property
    def name(self) -> str:
        return f"{self.spec.service}/{self.spec.runtime}"

    @property
    def done(self) -> bool:
        return self.future.done()

    def demand(self) -> None:
        """A request (or a warm-up) waits for this image: build it before those nobody waits for."""
        if not self.demanded and not self.started and not self.done:
            self.demanded = True
            self._queue._pump()

    async def wait(self) -> WorkerSpec:
        """The built spec; raises the build's error. Cancelling the caller never cancels the build."""
        self.demand()
        return await asyncio.shield(self.future)

    def cancel(self) -> None:
        """Nobody needs it any more (its pool closed): drop it if it has not started."""
        self._queue._drop(self)


class ImageQueue:
    """Builds images through `prepare`, at most `parallel` at once, demanded jobs first."""

    def __init__(self, prepare: Prepare, parallel: int, *, paused: bool = False) -> None:
        self._prepare = prepare
        self.parallel = parallel
        self._pending: list[ImageJob] = []
        self._running: set[asyncio.Task[None]] = set()
        self._order = itertools.count()
        self._paused = paused
        self._closed = False

    @property
    def waiting(self) -> int:
        """Jobs queued or building."""
        return len(self._pending) + len(self._running)

    def submit(self, spec: WorkerSpec) -> ImageJob:
        """Queue the image of `spec` (after every job queued before it, unless it is demanded)."""
        if self._closed:
            raise BackendError(f"service {spec.service}: the engine is shutting down; no image is built")
        job = ImageJob(self, spec, next(self._order))
        self._pending.append(job)
        self._pump()
        return job

    def resume(self) -> None:
        """Start building (a queue made paused, so the jobs given at start-up are ordered first)."""
        self._paused = False
        self._pump()

    async def close(self) -> None:
        """Engine stop: queued jobs fail, builds under way are awaited (a build cannot be interrupted
        halfway: it runs in a thread, and its temporary context must be removed)."""
        self._closed = True
        for job in self._pending:
            if not job.future.done():
                job.future.set_exception(BackendError(f"service {job.spec.service}: the engine stopped "
                                                      "before its image was built"))
        self._pending.clear()
        await asyncio.gather(*self._running, return_exceptions=True)

    # --- internals ------------------------------------------------------------------------

    def _drop(self, job: ImageJob) -> None:
        if job in self._pending:
            self._pending.remove(job)
            if not job.future.done():
                job.future.set_exception(BackendError(f"service {job.spec.service}: no longer served"))

    def _pump(self) -> None:
        while not self._paused and not self._closed and self._pending and len(self._running) < self.parallel:
            job = min(self._pending, key=lambda j: (not j.demanded, j.order))
            self._pending.remove(job)
            job.started = True
            task = asyncio.create_task(self._build(job), name=f"image-build-{job.name}")
            self._running.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._pump()

    async def _build(self, job: ImageJob) -> None:
        began = time.monotonic()
        try:
            built = await self._prepare(job.spec)
        except EngineError as exc:
            log.error("image_build_failed", pool=job.name, error=str(exc))
            kind = ImageBuildError if isinstance(exc, ImageBuildError) else BackendError  # the project's fault, or not
            job.future.set_exception(kind(f"service {job.spec.service}: building its {job.spec.runtime} "
                                                  f"image failed: {exc}"))
            return
        except Exception as exc:  # an unexpected error fails this service only, never the queue
            log.exception("image_build_failed", pool=job.name)
            job.future.set_exception(BackendError(f"service {job.spec.service}: building its {job.spec.runtime} "
                                                  f"image failed unexpectedly: {exc!r}"))
            return
        log.info("image_ready", pool=job.name, demanded=job.demanded, build_ms=round((time.monotonic() - began) * 1000))
        job.future.set_result(built)
