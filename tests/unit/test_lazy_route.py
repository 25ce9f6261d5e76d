"""LazyRoute (engine/lazy_route.py) over a real ImageQueue whose `prepare` is a plain coroutine:
following a lazy route's builds reports their outcome without moving them in the queue."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.backends.base import WorkerLimits, WorkerSpec
from engine.errors import EngineError, ImageBuildError
from engine.image_queue import ImageQueue
from engine.lazy_route import LazyRoute


def _spec(service: str) -> WorkerSpec:
    return WorkerSpec(engine_id="e", service=service, build_id="b", runtime="node", project_root=Path("/nowhere"),
                      limits=WorkerLimits())


def test_a_route_reports_built_failed_or_no_longer_served_and_never_jumps_the_queue() -> None:
    async def main() -> None:
        order: list[str] = []
        gate = asyncio.Event()

        async def prepare(spec: WorkerSpec) -> WorkerSpec:
            order.append(spec.service)
            await gate.wait()
            if spec.service == "broken":
                raise ImageBuildError("installing requirements.txt failed: six==999.0.0")
            return spec

        queue = ImageQueue(prepare, 1)
        first, broken, later = queue.submit(_spec("first")), queue.submit(_spec("broken")), queue.submit(_spec("later"))
        served = {"broken": True, "later": True}
        failing = LazyRoute("ZE1", "broken", [broken], lambda: served["broken"])
        waiting = asyncio.ensure_future(LazyRoute("ZE2", "later", [later], lambda: served["later"]).built())
        await asyncio.sleep(0)
        assert not later.demanded and not broken.demanded  # following a route demands nothing
        gate.set()
        with pytest.raises(EngineError, match="service broken: building its node image failed"):
            await failing.built()
        assert await waiting is True
        assert order == ["first", "broken", "later"]
        served["broken"] = False  # replaced or withdrawn meanwhile: its failure concerns nobody
        assert await failing.built() is False
        await queue.close()
        assert first.done

    asyncio.run(main())
