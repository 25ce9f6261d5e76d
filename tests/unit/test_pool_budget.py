"""What one pool may cost the others (engine/pool.py), with a tiny fake backend and fake runners.

End to end on Docker: tests/test_pool_hostile.py (crash loop next door) and tests/test_readiness.py
(a service that cannot boot). Here the mechanisms are pinned down exactly: the per-pool bound on
starts in flight, the back-off and the one-at-a-time probe of a failing pool, its 503 at once.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from engine import protocol
from engine.backends.base import Backend, ExitInfo, ExitKind, WorkerChannel, WorkerSpec
from engine.errors import BackendError, ChannelClosed, WorkerError, WorkersUnavailable
from engine.pool import Pool, PoolSettings
from engine.worker import Invocation


class _FakeChannel(WorkerChannel):
    """A runner that answers `init` with `ready`, and dies on `invoke` when told to."""

    def __init__(self, name: str, die_on_invoke: bool) -> None:
        self.worker_id = name
        self._die_on_invoke = die_on_invoke
        self._lines: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def send(self, data: bytes) -> None:
        kind = json.loads(data)["type"]
        if kind == "init":
            self._lines.put_nowait(json.dumps({"type": "ready", "protocol": protocol.PROTOCOL_VERSION}).encode())
        elif kind == "invoke" and self._die_on_invoke:
            self._lines.put_nowait(None)

    async def read_line(self) -> bytes:
        line = await self._lines.get()
        if line is None:
            raise ChannelClosed("stdout ended")
        return line

    async def kill(self) -> None:
        self._lines.put_nowait(None)

    async def exit_info(self) -> ExitInfo:
        return ExitInfo(ExitKind.EXITED, code=1)


class _FakeBackend(Backend):
    """Starts fake workers, each start taking `spawn_s`; records how many were in flight at once."""

    name = "fake"
    isolation = "none"

    def __init__(self, spawn_s: float = 0.05, fail: bool = False, die_on_invoke: bool = False) -> None:
        self.spawn_s, self.fail, self.die_on_invoke = spawn_s, fail, die_on_invoke
        self.in_flight = self.most_in_flight = self.spawns = 0
        self.spawned_at: list[float] = []

    async def spawn(self, spec: WorkerSpec, max_frame_bytes: int) -> WorkerChannel:
        self.spawns += 1
        self.spawned_at.append(time.monotonic())
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.spawn_s)
            if self.fail:
                raise BackendError("the fake backend cannot start workers")
            return _FakeChannel(f"w{self.spawns}", self.die_on_invoke)
        finally:
            self.in_flight -= 1


def _pool(backend: Backend, **overrides) -> Pool:
    spec = WorkerSpec(engine_id="e", service="svc", build_id="b", runtime="python", project_root=Path("/nonexistent"))
    init = protocol.Init(service="svc", project_root="/srv/project", functions=[], assets=[], env={},
                         limits=protocol.Limits(max_log_bytes=1024, max_response_bytes=1024, max_frame_bytes=1024))
    settings = dict(min_idle=0, max_workers=8, max_queue=64, idle_timeout_s=300, bootstrap_timeout_s=5,
                    max_frame_bytes=1024, max_lifecycle_calls=2, crash_backoff_max_s=0.8)
    settings.update(overrides)
    return Pool(backend, spec, init, PoolSettings(**settings))


async def test_a_pool_has_at_most_max_lifecycle_calls_starts_in_flight():
    backend = _FakeBackend(spawn_s=0.05)
    pool = _pool(backend, min_idle=8)
    await pool.start()
    try:
        deadline = time.monotonic() + 5
        while not pool.ready and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert pool.ready
        assert backend.spawns == 8 and backend.most_in_flight == 2
    finally:
        await pool.close()


async def test_a_pool_that_cannot_start_answers_at_once_and_probes_one_start_at_a_time():
    backend = _FakeBackend(spawn_s=0.01, fail=True)
    pool = _pool(backend, min_idle=4)
    await pool.start()
    try:
        while not pool.failing:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        with pytest.raises(WorkersUnavailable, match="could not start: the fake backend cannot start workers") as caught:
            await pool.acquire(10)
        assert time.monotonic() - started < 0.5 and caught.value.retry_after_s >= 1
        await asyncio.sleep(2.0)
        assert backend.most_in_flight <= 4  # the first warm-up asked for min_idle at once
        gaps = [b - a for a, b in zip(backend.spawned_at[4:], backend.spawned_at[5:])]
        # Then one start at a time, each after the back-off: 0.2 s doubling, capped at 0.8 s here.
        assert gaps and all(gap >= 0.18 for gap in gaps), gaps
        assert backend.spawns <= 4 + 6, backend.spawns
    finally:
        await pool.close()


async def test_three_workers_dying_on_their_first_invocation_make_a_crash_loop():
    backend = _FakeBackend(spawn_s=0.01, die_on_invoke=True)
    pool = _pool(backend, min_idle=1, max_workers=1)
    await pool.start()
    loop = asyncio.get_running_loop()
    try:
        for n in range(3):
            assert not pool.failing
            worker, _ = await pool.acquire(10)
            invocation = Invocation(f"i{n}", "svc", "fn", 1024, result=loop.create_future(), done=loop.create_future())
            with pytest.raises(WorkerError, match="exited with code 1"):
                await worker.invoke(protocol.encode_invoke(f"i{n}", "fn", {}, {}), invocation, loop.time() + 5)
            await worker.kill(worker.death or "crash")
        assert pool.failing
        with pytest.raises(WorkersUnavailable, match="keep dying before finishing an invocation"):
            await pool.acquire(10)
    finally:
        await pool.close()
