"""The outcome of builds the converger routed lazily (engine/lazy_route.py), reported where
deployments are.

A restored environment counts as applied the moment it is routed, before its image is built: an
engine with hundreds of them must not wait for every build before it serves. A build that later
fails is then the environment's problem alone, and its owner must be able to read why, as for a
deployment the engine refused: `on_failure` writes it in the environment's Logs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog

from engine.errors import EngineError

log = structlog.get_logger("engine.control")

#: (environment SID, build SID, the build's error naming the service and the step)
OnFailure = Callable[[str, str, str], Awaitable[None]]


class Route(Protocol):
    """What the engine's `apply(..., lazy=True)` returns (engine.lazy_route.LazyRoute)."""

    async def built(self) -> bool: ...


class LazyBuilds:
    """One background wait per lazily routed environment; a failure is handed to `on_failure` once."""

    def __init__(self, on_failure: OnFailure) -> None:
        self._on_failure = on_failure
        self._tasks: set[asyncio.Task[None]] = set()

    def watch(self, environment_sid: str, build_sid: str, route: Route) -> None:
        """Follow `route` until its images are built or it fails."""
        task = asyncio.create_task(self._follow(environment_sid, build_sid, route),
                                   name=f"lazy-build-{environment_sid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _follow(self, environment_sid: str, build_sid: str, route: Route) -> None:
        try:
            await route.built()
        except EngineError as exc:
            try:
                await self._on_failure(environment_sid, build_sid, str(exc))
            except Exception:  # the store is down: the engine log has it, and the 503 names it
                log.exception("lazy_build_failure_not_recorded", environment=environment_sid, build=build_sid)

    async def close(self) -> None:
        """Stop following (the builds themselves are the engine's, stopped with it)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
