"""The pool counts dead workers against max_workers until the backend says they are gone.

A tiny fake backend whose removals block until the test lets them finish: no Docker here (the
same attacks run on real containers in tests/test_docker_kill_path.py).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from engine import protocol
from engine.backends.base import Backend, ExitInfo, ExitKind, WorkerChannel, WorkerSpec
from engine.errors import AcquireTimeout, ChannelClosed, WorkersUnavailable
from engine.pool import Pool, PoolSettings


class StuckChannel(WorkerChannel):
    """Answers `init` with `ready`; its removal ends only when `removable` is set."""

    def __init__(self, worker_id: str, removable: asyncio.Event) -> None:
        self.worker_id = worker_id
        self.removable = removable
        self.lines: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.removed = False

    async def send(self, data: bytes) -> None:
        if json.loads(data)["type"] == "init":
            self.lines.put_nowait(json.dumps({"type": "ready", "protocol": protocol.PROTOCOL_VERSION}).encode())

    async def read_line(self) -> bytes:
        line = await self.lines.get()
        if line is None:
            raise ChannelClosed(f"worker {self.worker_id}: closed")
        return line

    async def kill(self) -> None:
        self.lines.put_nowait(None)  # the first attempt "failed": kill returns, the removal goes on

    async def wait_removed(self) -> None:
        await self.kill()
        await self.removable.wait()
        self.removed = True

    async def exit_info(self) -> ExitInfo:
        return ExitInfo(ExitKind.KILLED)


class StuckBackend(Backend):
    name = "stuck"
    isolation = "none (unit test)"

    def __init__(self) -> None:
        self.removable = asyncio.Event()
        self.spawned: list[StuckChannel] = []
        self.down: str | None = None

    async def spawn(self, spec: WorkerSpec, max_frame_bytes: int) -> WorkerChannel:
        channel = StuckChannel(f"w{len(self.spawned)}", self.removable)
        self.spawned.append(channel)
        return channel

    def unavailable(self) -> str | None:
        return self.down


def make_pool(backend: Backend, max_workers: int) -> Pool:
    spec = WorkerSpec(engine_id="t", service=f"svc-{id(backend)}", build_id="b", runtime="python", project_root=Path("/x"))
    init = protocol.Init(service=spec.service, project_root="/x", functions=[], assets=[], env={},
                         limits=protocol.Limits(max_log_bytes=1, max_response_bytes=1, max_frame_bytes=1 << 20))
    settings = PoolSettings(min_idle=1, max_workers=max_workers, max_queue=4, idle_timeout_s=300,
                            bootstrap_timeout_s=5, max_frame_bytes=1 << 20)
    return Pool(backend, spec, init, settings)


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_timed_out_worker_holds_its_place_until_it_is_removed() -> None:
    backend = StuckBackend()
    pool = make_pool(backend, max_workers=1)
    await pool.start()
    try:
        worker, _ = await pool.acquire(5)
        worker.mark_dead("timeout")  # what invoke does at the deadline, without waiting
        await settle()
        assert len(backend.spawned) == 1, "no replacement while the dead worker's container is not gone"
        assert pool._removing == {worker}
        with pytest.raises(AcquireTimeout):  # no place for a second worker: the wait times out
            await pool.acquire(0.2)
        backend.removable.set()
        replacement, _ = await pool.acquire(5)
        assert backend.spawned[0].removed and len(backend.spawned) == 2
        assert replacement is not worker and not pool._removing
    finally:
        backend.removable.set()
        await pool.close()


async def test_requests_fail_fast_while_the_backend_can_neither_start_nor_remove() -> None:
    backend = StuckBackend()
    pool = make_pool(backend, max_workers=1)
    await pool.start()
    try:
        worker, _ = await pool.acquire(5)
        worker.mark_dead("timeout")
        backend.down = "the Docker daemon at unix:///x is unreachable"
        await settle()
        started = asyncio.get_running_loop().time()
        with pytest.raises(WorkersUnavailable, match="unreachable"):
            await pool.acquire(5)
        assert asyncio.get_running_loop().time() - started < 1
    finally:
        backend.removable.set()
        await pool.close()
