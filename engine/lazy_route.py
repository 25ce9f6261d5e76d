"""A deployed environment routed before its image is built: what its caller waits on to learn the outcome.

An engine restored on a store with hundreds of deployed environments (or a replica seeing them for
the first time) must not build every image before it serves: each environment is routed at once,
its pools made with their images queued like a folder service's (engine/image_queue.py). The
control plane still has to know whether the build it counts as applied could be built, to report
a failure in the environment's Logs like a refused deployment; `LazyRoute.built` tells it, without
demanding the build (waiting here moves nothing in the queue: only requests and warm-ups do).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from engine.errors import EngineError
from engine.image_queue import ImageJob


class LazyRoute:
    """One environment (`key`) served lazily: the image builds its pools wait for."""

    def __init__(self, key: str, service_name: str, jobs: list[ImageJob], still_served: Callable[[], bool]) -> None:
        """`still_served`: whether the routed service is still the one served for `key`; once it is
        replaced or withdrawn, its build's outcome (often "no longer served") concerns nobody."""
        self.key = key
        self.service_name = service_name
        self._jobs = jobs
        self._still_served = still_served

    async def built(self) -> bool:
        """Wait for every image: True once all are built, False if the service stopped being served
        first (replaced or withdrawn); raises the build's EngineError (naming the service and the
        step) while it is still served. Cancelling the caller never cancels a build."""
        for job in self._jobs:
            try:
                await asyncio.shield(job.future)
            except EngineError:
                if self._still_served():
                    raise
                return False
        return self._still_served()
