"""Pools of one account share its worker quota: a waiting request takes an idle sibling's place,
a pool only keeping min_idle never takes it back, and with nothing idle the 503 names the quota.

The fake backend of test_pool_removal (removals finish when the test says so); the same quota
is attacked on real containers in tests/control/test_account_workers.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine import protocol
from engine.backends.base import WorkerSpec
from engine.quota import WorkerQuota
from engine.errors import AcquireTimeout
from engine.pool import Pool, PoolSettings
from tests.unit.test_pool_removal import StuckBackend, settle


def pool_of(backend: StuckBackend, name: str, budget: WorkerQuota) -> Pool:
    spec = WorkerSpec(engine_id="t", service=f"{name}-{id(backend)}", build_id="b", runtime="python", project_root=Path("/x"))
    init = protocol.Init(service=spec.service, project_root="/x", functions=[], assets=[], env={},
                         limits=protocol.Limits(max_log_bytes=1, max_response_bytes=1, max_frame_bytes=1 << 20))
    settings = PoolSettings(min_idle=1, max_workers=4, max_queue=4, idle_timeout_s=300,
                            bootstrap_timeout_s=5, max_frame_bytes=1 << 20)
    return Pool(backend, spec, init, settings, quota=budget)


async def test_a_waiting_request_takes_an_idle_siblings_place_and_the_quota_holds() -> None:
    backend = StuckBackend()
    budget = WorkerQuota("AC" + "1" * 32, limit=2)
    a, b = pool_of(backend, "a", budget), pool_of(backend, "b", budget)
    await a.start()
    await b.start()
    try:
        await settle()
        assert len(backend.spawned) == 2 and a.idle_count == b.idle_count == 1
        first, _ = await a.acquire(5)
        second = asyncio.ensure_future(a.acquire(5))
        await settle()
        assert b.idle_count == 0, "b's idle worker is stopped to make room for a's waiting request"
        assert len(backend.spawned) == 2, "no start before b's container is gone"
        backend.removable.set()
        worker, cold = await second
        await settle()
        assert cold and len(backend.spawned) == 3 and budget.held() == 2
        assert b.held == 0, "b only keeps min_idle: it does not take the place back"
        with pytest.raises(AcquireTimeout, match="max_workers_per_account=2"):
            await b.acquire(0.3)  # both of the account's workers are busy: nothing to take
        a.release(first, clean=True)  # idle now while b's request would wait: the place goes to b
        a.release(worker, clean=True)
        got, _ = await b.acquire(5)
        assert budget.held() <= 2 and got is not None
    finally:
        backend.removable.set()
        await a.close()
        await b.close()
