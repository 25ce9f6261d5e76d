"""A tenant's workers cannot hold the engine or the next request (engine/pool.py, engine/worker.py).

Each test attacks one bound through the public interfaces, on real containers over real HTTP:

- a crash-looping service (its handler calls `os._exit(1)`) under 8 concurrent clients costs
  another service on the same engine no error and no slow request (per-pool bound on backend
  calls, back-off on a crash loop);
- a worker that stopped reading its input cannot make the engine's write of a large frame wait
  forever: the deadline covers the write (504, worker replaced, next request fine);
- a worker's life is bounded by `max_worker_invocations` and `max_worker_age_s`, so state a
  handler leaves in memory does not outlive the bound.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import time

import httpx
import pytest

from bench import steady
from tests.conftest import PROJECTS
from tests.docker_helpers import log_records, wait_for

GOOD = PROJECTS / "tenant-good"
CRASH = PROJECTS / "tenant-crash"


@pytest.fixture(autouse=True)
def _docker(docker_available):
    """Every test here runs on the docker backend (runc): the container path is the one under attack."""


def _host(engine, service: str) -> dict[str, str]:
    return {"Host": f"{service}.localhost:{engine.port}"}


def _metric(engine, name: str, **labels: str) -> float:
    return steady.metric_total(steady.scrape(engine.admin_url), name, **labels)


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


# --- fairness: a crash loop next door -----------------------------------------------------------

LOAD_S = 20.0
CLIENTS = 8
SLOW_S = 2.0  # the contract's bound for "slow", generous on a loaded 2-core machine


async def _measure(client: httpx.AsyncClient, headers: dict[str, str], path: str, duration_s: float,
                   statuses: list[int], errors: list[str], pause_s: float = 0.05) -> list[float]:
    """Sequential requests to one function for `duration_s`, `pause_s` apart: each one's latency."""
    latencies: list[float] = []
    end = time.monotonic() + duration_s
    while time.monotonic() < end:
        started = time.monotonic()
        try:
            reply = await client.get(path, headers=headers)
            statuses.append(reply.status_code)
            if reply.status_code != 200:
                errors.append(f"{path}: {reply.status_code} {reply.text[:200]}")
        except httpx.HTTPError as exc:
            errors.append(f"{path}: {exc!r}")
        latencies.append(time.monotonic() - started)
        await asyncio.sleep(pause_s)
    return latencies


async def _crash_loop(client: httpx.AsyncClient, headers: dict[str, str], duration_s: float,
                      statuses: list[int]) -> None:
    """One of the attacking clients: calls the crashing function again as soon as it is answered.

    After a 503 it pauses 0.1 s (ten times less than the Retry-After it was given): the attack is
    on the backend's lifecycle calls, not a flood of instant answers, which any fast function
    would draw alike and which the front door's per-client limits are for.
    """
    end = time.monotonic() + duration_s
    while time.monotonic() < end:
        try:
            reply = await client.get("/crash", headers=headers)
            statuses.append(reply.status_code)
            if reply.status_code == 503:
                await asyncio.sleep(0.1)
        except httpx.HTTPError:
            statuses.append(0)


def _attack(url: str, headers: dict[str, str], duration_s: float, results: multiprocessing.Queue) -> None:
    """The attacking clients, in a process of their own so they do not slow the measuring one."""

    async def main() -> list[int]:
        statuses: list[int] = []
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=CLIENTS)) as client:
            await asyncio.gather(*(_crash_loop(client, headers, duration_s, statuses) for _ in range(CLIENTS)))
        return statuses

    results.put(asyncio.run(main()))


async def _measure_both(engine) -> tuple[dict[str, dict[str, float]], list[str]]:
    errors: list[str] = []
    statuses: list[int] = []
    async with httpx.AsyncClient(base_url=engine.url, timeout=30) as client:
        ok, churn = await asyncio.gather(
            _measure(client, _host(engine, "good"), "/ok", LOAD_S, statuses, errors),
            # Each call leaves its worker dirty; the pool starts the replacement when the worker is
            # taken, and 1.5 s later it is warm, unless starts of this pool wait behind the attacker's.
            _measure(client, _host(engine, "churn"), "/churn", LOAD_S, statuses, errors, pause_s=1.5),
        )
    return {"ok": _percentiles(ok), "churn": _percentiles(churn)}, errors


def _phase(engine, with_crash_loop: bool) -> tuple[dict[str, dict[str, float]], list[str], list[int]]:
    """Measure the neighbours (warm path, worker-replacing path), with or without the attack."""
    if not with_crash_loop:
        return (*asyncio.run(_measure_both(engine)), [])
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue = context.Queue()
    attacker = context.Process(target=_attack, args=(engine.url, _host(engine, "crash"), LOAD_S + 1, results))
    attacker.start()
    try:
        time.sleep(1.0)  # the attack is under way before the measuring starts
        measured, errors = asyncio.run(_measure_both(engine))
        crash_statuses = results.get(timeout=60)
    finally:
        attacker.join(timeout=30)
        if attacker.is_alive():
            attacker.kill()
            attacker.join()
    return measured, errors, crash_statuses


def test_a_crash_looping_service_costs_its_neighbours_no_error_and_no_slow_request(engine_factory):
    """8 clients drive a service whose handler kills its worker on every call, for 20 s; meanwhile
    one neighbour's warm path (`good`'s `/ok`) and another's worker-replacing path (`churn`'s
    `/churn`: every call leaves a thread, so each call needs a new worker started and the old one
    removed through the same Docker backend, in the 1.5 s before the next call) stay error-free
    and under 2 s."""
    engine = engine_factory(
        f"good={GOOD}", f"churn={GOOD}", f"crash={CRASH}", backend="docker", args=["--domain", "localhost"],
        config={"min_idle": 1, "max_workers": 4},
    )
    baseline, baseline_errors, _ = _phase(engine, with_crash_loop=False)
    loaded, errors, crash_statuses = _phase(engine, with_crash_loop=True)
    print(f"\nneighbours without the crash loop: {baseline}\nneighbours during the crash loop: {loaded}")
    print(f"crash-loop requests: {len(crash_statuses)}, statuses {sorted(set(crash_statuses))}")
    exits = _metric(engine, "functions_engine_worker_exits_total", service="crash", reason="crash")
    print(f"crash-loop workers that died: {exits:g}")
    assert not baseline_errors, baseline_errors[:5]
    assert not errors, errors[:5]
    assert loaded["ok"]["max_ms"] < SLOW_S * 1000, f"/ok had a slow request during the crash loop: {loaded}"
    # A container start on this shared machine takes 0.5-5 s by itself, so the worker-replacing
    # path is slow only beyond what it took without the attack, plus the same 2 s.
    churn_bound_ms = baseline["churn"]["max_ms"] + SLOW_S * 1000
    assert loaded["churn"]["max_ms"] < churn_bound_ms, f"/churn had a slow request during the crash loop: {loaded}"
    # The attack really ran, and its restarts were slowed down: answered 502 (worker died) or 503
    # at once while it backs off, never left waiting.
    assert crash_statuses and set(crash_statuses) <= {502, 503}, sorted(set(crash_statuses))
    assert 503 in crash_statuses
    # Without back-off every request could cost a container; with it the doubling delay (capped
    # at crash_backoff_max_s = 10 s) allows a few dozen in 20 s.
    assert 0 < exits <= 60, exits


# --- the deadline covers the write ---------------------------------------------------------------


def test_a_worker_that_stops_reading_cannot_hold_a_large_write_past_the_deadline(engine_factory, docker_backend):
    """The handler swaps the runner's input for a pipe nobody writes to and answers normally; the
    next request carries a ~900 KB body, whose frame the worker never reads. The engine answers
    504 at the function's time limit, replaces the worker, and the request after that is fine."""
    time_limit_s = 3.0
    engine = engine_factory(
        f"good={GOOD}", backend=docker_backend,
        config={"min_idle": 1, "max_workers": 1, "time_limit_s": time_limit_s},
    )
    with engine.client(timeout=60) as client:
        first = client.get("/deaf")
        assert first.status_code == 200, first.text
        deaf_worker = first.json()["worker"]
        started = time.monotonic()
        big = client.post("/ok", json={"pad": "x" * 900_000}, timeout=30)
        took = time.monotonic() - started
        assert big.status_code == 504, (big.status_code, big.text[:300])
        assert took < time_limit_s + 5, f"the 504 came {took:.1f} s after the request, limit {time_limit_s} s"
        after = client.post("/ok", json={"pad": "x" * 900_000})
        assert after.status_code == 200, after.text[:300]
        assert after.json()["worker"] != deaf_worker
    assert _metric(engine, "functions_engine_worker_exits_total", service="good", reason="timeout") == 1


# --- a worker's life is bounded ------------------------------------------------------------------


def test_state_left_in_a_worker_does_not_outlive_max_worker_invocations(engine_factory):
    """A module-level counter (state no clean-check can see) never exceeds the service's
    max_worker_invocations = 3: each worker is retired after its third invocation and replaced."""
    engine = engine_factory(
        f"good={GOOD}", backend="docker",
        config={"min_idle": 1, "max_workers": 1, "services": {"good": {"max_worker_invocations": 3}}},
    )
    counts, workers = [], []
    with engine.client() as client:
        for _ in range(10):
            reply = client.get("/count")
            assert reply.status_code == 200, reply.text
            counts.append(reply.json()["count"])
            workers.append(reply.json()["worker"])
    assert max(counts) == 3, counts
    assert counts == [1, 2, 3, 1, 2, 3, 1, 2, 3, 1], counts
    assert len(set(workers)) == 4, workers
    retired = wait_for(lambda: _metric(engine, "functions_engine_worker_exits_total", service="good",
                                       reason="retired") >= 3 or None, 30, "three retirements to be counted")
    assert retired
    assert _metric(engine, "functions_engine_worker_exits_total", service="good", reason="retired") == 3
    lines = [r for r in log_records(engine) if r.get("event") == "worker_exit" and r.get("reason") == "retired"]
    assert len(lines) == 3 and all(r["invocations"] == 3 for r in lines), lines


def test_an_idle_worker_is_retired_at_max_worker_age_s(engine_factory):
    """A worker older than max_worker_age_s is replaced even while idle: the next request meets a
    new worker whose counter starts again."""
    engine = engine_factory(
        f"good={GOOD}", backend="docker", config={"min_idle": 1, "max_workers": 1, "max_worker_age_s": 3},
    )
    with engine.client() as client:
        first = client.get("/count").json()
        wait_for(lambda: _metric(engine, "functions_engine_worker_exits_total", service="good",
                                 reason="retired") >= 1 or None, 30, "the idle worker to be retired")
        second = client.get("/count").json()
    assert first["count"] == 1 and second["count"] == 1
    assert second["worker"] != first["worker"]
