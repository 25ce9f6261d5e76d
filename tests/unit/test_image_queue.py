"""The image queue's rules (engine/image_queue.py) with a fake build: order, the parallelism bound,
demanded jobs first, a failure that stays its service's own, nothing started while paused.
End to end on Docker: tests/test_lazy_images.py."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from engine.backends.base import WorkerSpec
from engine.errors import BackendError, ImageBuildError
from engine.image_queue import ImageQueue


def _spec(name: str) -> WorkerSpec:
    return WorkerSpec(engine_id="e", service=name, build_id="b", runtime="python", project_root=Path("/nowhere"))


class _Builds:
    """A fake `prepare`: each build waits until the test releases it; records order and concurrency."""

    def __init__(self, fail: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.started: list[str] = []
        self.running = 0
        self.most_at_once = 0
        self.release: dict[str, asyncio.Event] = {}
        self.fail = fail

    async def __call__(self, spec: WorkerSpec) -> WorkerSpec:
        self.started.append(spec.service)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await self.release.setdefault(spec.service, asyncio.Event()).wait()
            if spec.service in self.fail:
                raise ImageBuildError(f"installing requirements.txt of {spec.service} failed: no such version")
            return dataclasses.replace(spec, image=f"img-{spec.service}")
        finally:
            self.running -= 1

    def done(self, name: str) -> None:
        self.release.setdefault(name, asyncio.Event()).set()


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_builds_run_in_order_at_most_parallel_at_once() -> None:
    async def scenario() -> None:
        builds = _Builds()
        queue = ImageQueue(builds, parallel=2)
        jobs = [queue.submit(_spec(f"s{i}")) for i in range(5)]
        await _settle()
        assert builds.started == ["s0", "s1"] and queue.waiting == 5
        for name in ("s0", "s1", "s2", "s3", "s4"):
            builds.done(name)
            await _settle()
        assert builds.started == ["s0", "s1", "s2", "s3", "s4"]
        assert builds.most_at_once == 2
        assert [(await j.wait()).image for j in jobs] == [f"img-s{i}" for i in range(5)]
        assert queue.waiting == 0

    asyncio.run(scenario())


def test_a_demanded_build_goes_before_those_nobody_waits_for() -> None:
    """s0 builds; s1..s4 queue; a request for s4 waits for it: s4 is the next to build, not s1."""
    async def scenario() -> None:
        builds = _Builds()
        queue = ImageQueue(builds, parallel=1)
        jobs = [queue.submit(_spec(f"s{i}")) for i in range(5)]
        await _settle()
        waiting = asyncio.create_task(jobs[4].wait())
        await _settle()
        builds.done("s0")
        await _settle()
        assert builds.started == ["s0", "s4"]
        builds.done("s4")
        assert (await waiting).image == "img-s4"
        for name in ("s1", "s2", "s3"):
            builds.done(name)
        await asyncio.gather(*(j.wait() for j in jobs))
        assert builds.started == ["s0", "s4", "s1", "s2", "s3"]

    asyncio.run(scenario())


def test_a_failed_build_is_its_service_s_alone_and_names_it_and_the_step() -> None:
    async def scenario() -> None:
        builds = _Builds(fail={"bad"})
        queue = ImageQueue(builds, parallel=1)
        bad, good = queue.submit(_spec("bad")), queue.submit(_spec("good"))
        builds.done("bad")
        builds.done("good")
        with pytest.raises(ImageBuildError) as err:
            await bad.wait()
        assert "service bad: building its python image failed" in str(err.value)
        assert "requirements.txt" in str(err.value)
        assert (await good.wait()).image == "img-good"

    asyncio.run(scenario())


def test_nothing_builds_while_paused_and_the_warm_ones_go_first_on_resume() -> None:
    """At start-up the pools are made first (paused), those warmed at start demanded, then resume."""
    async def scenario() -> None:
        builds = _Builds()
        queue = ImageQueue(builds, parallel=1, paused=True)
        jobs = [queue.submit(_spec(f"s{i}")) for i in range(4)]
        jobs[2].demand()
        await _settle()
        assert builds.started == []
        queue.resume()
        await _settle()
        assert builds.started == ["s2"]
        for name in ("s2", "s0", "s1", "s3"):
            builds.done(name)
            await _settle()
        assert builds.started == ["s2", "s0", "s1", "s3"]

    asyncio.run(scenario())


def test_a_waiter_cancelled_does_not_cancel_the_build_and_close_fails_the_queued() -> None:
    async def scenario() -> None:
        builds = _Builds()
        queue = ImageQueue(builds, parallel=1)
        first, second = queue.submit(_spec("a")), queue.submit(_spec("b"))
        waiter = asyncio.create_task(first.wait())
        await _settle()
        waiter.cancel()
        await _settle()
        assert not first.done
        builds.done("a")
        await _settle()
        assert (await first.wait()).image == "img-a"
        builds.done("b")
        third = queue.submit(_spec("c"))  # queued behind b
        closing = asyncio.create_task(queue.close())
        await _settle()
        await closing
        assert (await second.wait()).image == "img-b"  # under way at close: finished, not abandoned
        with pytest.raises(BackendError, match="engine stopped before its image was built"):
            await third.wait()

    asyncio.run(scenario())
