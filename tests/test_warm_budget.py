"""The warm budget (engine/warmth.py) on a real engine, real HTTP and real runc containers.

Idle workers of all pools share `warm_budget_workers`/`warm_budget_mb`; the least recently called
pool loses its idle worker first; a pinned service (min_idle set in `[services.X]`) keeps its floor;
a pool not called for `scale_to_zero_after_s` goes to zero and comes back on its next request; a
service that cannot boot never takes warmth from the others. Containers are counted by label with
the docker SDK and checked against the budget's metrics.

`max_workers = 1` keeps the arithmetic plain: a pool then holds at most one worker, idle or busy.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import docker
import httpx
import pytest

from bench import steady
from engine.backends.docker_reaper import ENGINE_LABEL, SERVICE_LABEL
from tests.conftest import PROJECTS, free_port, write_toml
from tests.docker_helpers import engine_id_of, log_records, wait_for

GOOD = PROJECTS / "tenant-good"
BOOT_EXIT = PROJECTS / "tenant-boot-exit"
MEMORY_MB = 128


def _containers(engine) -> dict[str, list[str]]:
    """Running containers of this engine by service (ids), from the Docker daemon itself."""
    client = docker.from_env()
    try:
        # The low-level list: one call, no per-container inspect racing a removal.
        found = client.api.containers(filters={"label": f"{ENGINE_LABEL}={engine.extra['engine_id']}"})
        by_service: dict[str, list[str]] = {}
        for c in found:
            by_service.setdefault(c["Labels"][SERVICE_LABEL], []).append(c["Id"])
        return by_service
    finally:
        client.close()


def _counts(engine) -> dict[str, int]:
    return {name: len(ids) for name, ids in _containers(engine).items()}


def _get(engine, service: str, path: str = "/ok") -> httpx.Response:
    with engine.client() as client:
        return client.get(path, headers={"Host": f"{service}.localhost:{engine.port}"})


def _metric(engine, name: str, **labels: str) -> float:
    return steady.metric_total(steady.scrape(engine.admin_url), name, **labels)


def _settle(engine, want: dict[str, int], what: str) -> None:
    """Containers are stopped in the background: wait until the daemon shows exactly `want`."""
    wait_for(lambda: _counts(engine) == want, 30, f"{what}: containers {want} (have {_counts(engine)})")


def _start(engine_factory, named: list[tuple[str, object]], **config: object):
    engine = engine_factory(
        *[f"{name}={path}" for name, path in named], backend="docker", args=["--domain", "localhost"],
        config={"min_idle": 1, "max_workers": 1, "memory_mb": MEMORY_MB, "warm_budget_mb": 100_000, **config},
        ready_timeout=240,
    )
    engine.extra["engine_id"] = engine_id_of(engine)
    return engine


def test_over_the_budget_the_least_recently_called_pool_loses_its_idle_worker_first(engine_factory, docker_available):
    """4 services, a budget of 2 idle workers: a and b warm at start (in order), c and d cold.
    Call a, b, then c: c's worker, idle after its answer, puts the engine over the budget, and a's
    idle worker (called before b) is the one stopped. Then d evicts b, and a comes back cold with 200."""
    engine = _start(engine_factory, [("a", GOOD), ("b", GOOD), ("c", GOOD), ("d", GOOD)], warm_budget_workers=2)
    _settle(engine, {"a": 1, "b": 1}, "warm at start, in order, as many as fit")
    assert _metric(engine, "functions_engine_warm_budget_used_workers") == 2
    assert _metric(engine, "functions_engine_warm_budget_limit_workers") == 2
    for name in ("a", "b"):
        assert _get(engine, name).status_code == 200
    assert _counts(engine) == {"a": 1, "b": 1}
    b_before = _containers(engine)["b"]
    assert _get(engine, "c").status_code == 200
    _settle(engine, {"b": 1, "c": 1}, "a (least recently called) evicted for c")
    assert _containers(engine)["b"] == b_before, "b's worker must be the same container"
    assert _get(engine, "d").status_code == 200
    _settle(engine, {"c": 1, "d": 1}, "then b")
    started = time.monotonic()
    assert _get(engine, "a").status_code == 200  # cold again: a new container, answered
    assert time.monotonic() - started < 30
    _settle(engine, {"d": 1, "a": 1}, "then c")
    samples = steady.scrape(engine.admin_url)
    assert steady.metric_total(samples, "functions_engine_warm_budget_evictions_total", reason="workers") == 3
    assert steady.metric_total(samples, "functions_engine_warm_budget_evictions_total", reason="memory") == 0
    assert steady.metric_total(samples, "functions_engine_warm_budget_used_workers") == 2
    assert steady.metric_total(samples, "functions_engine_warm_budget_used_mb") == 2 * MEMORY_MB
    assert steady.metric_total(samples, "functions_engine_cold_starts_total", service="a") == 1
    assert steady.metric_total(samples, "functions_engine_cold_starts_total", service="b") == 0
    assert steady.metric_total(samples, "functions_engine_worker_exits_total", service="a", reason="evicted") == 1
    evicted = [r["pool"] for r in log_records(engine) if r.get("event") == "worker_exit" and r.get("reason") == "evicted"]
    assert evicted == ["a/python", "b/python", "c/python"], evicted


def test_the_memory_limit_evicts_by_memory_mb(engine_factory, docker_available):
    """warm_budget_mb = 2.5 × memory_mb holds two idle workers: the third call evicts the first pool,
    counted as reason="memory"."""
    engine = _start(engine_factory, [("a", GOOD), ("b", GOOD), ("c", GOOD)],
                    warm_budget_mb=int(2.5 * MEMORY_MB), warm_budget_workers=100)
    _settle(engine, {"a": 1, "b": 1}, "two fit at start")
    for name in ("a", "b", "c"):
        assert _get(engine, name).status_code == 200
    _settle(engine, {"b": 1, "c": 1}, "a evicted")
    assert _metric(engine, "functions_engine_warm_budget_evictions_total", reason="memory") == 1
    assert _metric(engine, "functions_engine_warm_budget_used_mb") == 2 * MEMORY_MB
    assert _metric(engine, "functions_engine_warm_budget_limit_mb") == int(2.5 * MEMORY_MB)


def test_a_pinned_service_is_never_evicted_nor_scaled_to_zero(engine_factory, docker_available):
    """p pins min_idle = 1; a budget of 2 leaves one place to a and b, which take it from each
    other call after call while p's one container stays the same. Then nobody calls for
    scale_to_zero_after_s: a and b go to zero, p stays; a's next request is answered 200 (cold)."""
    engine = _start(engine_factory, [("a", GOOD), ("b", GOOD), ("p", GOOD)], warm_budget_workers=2,
                    scale_to_zero_after_s=8, services={"p": {"min_idle": 1}})
    _settle(engine, {"a": 1, "p": 1}, "p pinned and a warm at start; b cold")
    pinned = _containers(engine)["p"]
    assert _metric(engine, "functions_engine_warm_budget_pinned_mb") == MEMORY_MB
    for name in ("b", "a", "b", "a"):
        assert _get(engine, name).status_code == 200
        assert _containers(engine)["p"] == pinned
    _settle(engine, {"a": 1, "p": 1}, "a called last")
    assert _metric(engine, "functions_engine_warm_budget_evictions_total", reason="workers") == 4
    _settle(engine, {"p": 1}, "a scaled to zero after 8 s without a call")
    assert _containers(engine)["p"] == pinned
    assert _metric(engine, "functions_engine_warm_budget_evictions_total", reason="scale_to_zero") == 1
    assert _metric(engine, "functions_engine_warm_budget_used_workers") == 1
    assert any(r.get("event") == "pool_scaled_to_zero" and r.get("pool") == "a/python" for r in log_records(engine))
    cold_before = _metric(engine, "functions_engine_cold_starts_total", service="a")
    assert _get(engine, "a").status_code == 200
    assert _metric(engine, "functions_engine_cold_starts_total", service="a") == cold_before + 1
    _settle(engine, {"a": 1, "p": 1}, "a warm again after its call")
    assert _containers(engine)["p"] == pinned


def test_a_service_that_cannot_boot_never_takes_the_budget_from_others(engine_factory, docker_available):
    """good-a and good-b fill the budget; boot-exit (os._exit(3) at import) is hammered: every
    request is a 503 naming the boot failure, and the good services keep their same warm containers,
    with no eviction and no cold start."""
    engine = _start(engine_factory, [("good-a", GOOD), ("good-b", GOOD), ("boot-exit", BOOT_EXIT)],
                    warm_budget_workers=2)
    _settle(engine, {"good-a": 1, "good-b": 1}, "the good ones warm")
    before = _containers(engine)
    statuses = Counter()
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        statuses[_get(engine, "boot-exit", "/hello").status_code] += 1
        time.sleep(0.2)
    assert set(statuses) == {503}, statuses
    assert _metric(engine, "functions_engine_worker_start_failures_total", service="boot-exit") >= 1
    for name in ("good-a", "good-b"):
        assert _get(engine, name).status_code == 200
    after = _containers(engine)
    assert (after["good-a"], after["good-b"]) == (before["good-a"], before["good-b"])
    samples = steady.scrape(engine.admin_url)
    assert steady.metric_total(samples, "functions_engine_warm_budget_evictions_total") == 0
    assert steady.metric_total(samples, "functions_engine_cold_starts_total", service="good-a") == 0
    assert steady.metric_total(samples, "functions_engine_warm_budget_used_workers") == 2


def test_pinning_more_than_the_budget_is_an_error_at_start_naming_the_services(tmp_path):
    """Refused before anything starts, exit status 1, the message naming the pools and the numbers."""
    config = tmp_path / "engine.toml"
    write_toml(config, {"memory_mb": 256, "warm_budget_mb": 600, "warm_budget_workers": 10,
                        "services": {"shop": {"min_idle": 2}, "blog": {"min_idle": 1}}})
    result = subprocess.run(
        [sys.executable, "-m", "engine", "serve", f"shop={GOOD}", f"blog={GOOD}", f"free={GOOD}",
         "--backend", "process", "--port", str(free_port()), "--admin-port", str(free_port()),
         "--config", str(config)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "pinned services need 768 MB and 3 idle workers" in result.stderr, result.stderr
    assert "shop/python (min_idle=2 × memory_mb=256)" in result.stderr and "blog/python" in result.stderr
    assert "warm_budget_mb=600" in result.stderr and "free" not in result.stderr.split("budget")[-1].split(";")[0]


def test_one_service_within_the_budget_is_warm_at_readiness_as_before(engine_factory, backend):
    """The default budget: a single service is warm when /readyz turns 200, and stays warm."""
    engine = engine_factory(GOOD, backend=backend)
    samples = steady.scrape(engine.admin_url)
    assert steady.metric_total(samples, "functions_engine_workers", state="idle") == 1
    assert steady.metric_total(samples, "functions_engine_warm_budget_used_workers") == 1
    assert httpx.get(engine.url + "/ok", timeout=30).status_code == 200
    assert steady.metric_total(steady.scrape(engine.admin_url), "functions_engine_cold_starts_total") == 0


STEADY = Path(__file__).resolve().parent.parent / "bench" / "projects" / "steady-py"


def test_a_burst_to_every_service_cannot_leave_more_idle_workers_than_the_budget(engine_factory, docker_available):
    """Clients send 4 simultaneous 1 s requests to each of 3 services (max_workers 2): every pool
    grows to its max_workers, busy, which the budget does not bound. Once they answer, the idle
    workers left are within warm_budget_workers, by the engine's gauge and by the daemon's count."""
    import concurrent.futures

    engine = _start(engine_factory, [("x", STEADY), ("y", STEADY), ("z", STEADY)], warm_budget_workers=3,
                    max_workers=2, acquire_timeout_s=30)

    def call(service: str) -> int:
        with engine.client(timeout=60) as client:
            return client.get("/work?ms=1000", headers={"Host": f"{service}.localhost:{engine.port}"}).status_code

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(call, ["x", "y", "z"] * 4))
    assert statuses == [200] * 12, statuses
    started = _metric(engine, "functions_engine_worker_bootstrap_seconds_count")
    assert started >= 6, f"every pool should have grown to max_workers=2 ({started} workers started)"
    wait_for(lambda: sum(_counts(engine).values()) <= 3, 30, f"idle containers within the budget (have {_counts(engine)})")
    assert _metric(engine, "functions_engine_warm_budget_used_workers") <= 3
    time.sleep(2)  # nothing grows back past it afterwards
    assert sum(_counts(engine).values()) <= 3, _counts(engine)
    assert _metric(engine, "functions_engine_workers", state="idle") <= 3


def test_scale_to_zero_after_s_is_per_service_too(engine_factory, backend):
    """Global scale_to_zero_after_s = 2 s, `[services.slow]` 3600 s: after a few seconds without a
    call `fast` has no idle worker and `slow` still has its one; `fast`'s next request is answered."""
    if backend != "process":
        pytest.skip("the setting is the pool's, not the backend's: the process backend is enough")
    engine = engine_factory(f"fast={GOOD}", f"slow={GOOD}", backend=backend, args=["--domain", "localhost"],
                            config={"scale_to_zero_after_s": 2, "services": {"slow": {"scale_to_zero_after_s": 3600}}})

    def idle(service: str) -> float:
        return _metric(engine, "functions_engine_workers", service=service, state="idle")

    wait_for(lambda: idle("fast") == 0, 15, "fast scaled to zero")
    assert idle("slow") == 1
    assert _metric(engine, "functions_engine_warm_budget_evictions_total", reason="scale_to_zero") == 1
    assert _get(engine, "fast").status_code == 200
    wait_for(lambda: idle("fast") == 1, 15, "fast warm again after its call")


def test_many_services_are_ready_with_what_fits_warm_and_every_one_answers(engine_factory, backend):
    """12 services, a budget of 3 idle workers: /readyz turns 200 with the first 3 (in order) warm and
    the others cold, not after starting 12; then every service answers 200, and the idle workers
    left stay within the budget."""
    if backend != "process":
        pytest.skip("start-up order and the budget are the engine's, not the backend's: the process backend is enough")
    names = [f"s{i:02d}" for i in range(12)]
    engine = engine_factory(*[f"{n}={GOOD}" for n in names], backend=backend, args=["--domain", "localhost"],
                            config={"warm_budget_workers": 3, "max_workers": 2})
    samples = steady.scrape(engine.admin_url)
    started = steady.metric_total(samples, "functions_engine_worker_bootstrap_seconds_count")
    assert started <= 3, f"{started} workers started before readiness, the budget holds 3"
    wait_for(lambda: steady.metric_total(steady.scrape(engine.admin_url), "functions_engine_workers", state="idle") == 3,
             15, "the 3 warm workers")
    samples = steady.scrape(engine.admin_url)
    warm = [n for n in names if steady.metric_total(samples, "functions_engine_workers", service=n, state="idle")]
    assert warm == names[:3], warm
    for name in names:
        assert _get(engine, name).status_code == 200, name
    idle = lambda: steady.metric_total(steady.scrape(engine.admin_url), "functions_engine_workers", state="idle")  # noqa: E731
    wait_for(lambda: idle() <= 3, 15, "idle workers back within the budget")
    assert _metric(engine, "functions_engine_cold_starts_total") == 9


@pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")  # an in-process engine, as there
def test_a_deployment_pinning_more_than_the_budget_is_refused_naming_it(backend, tmp_path):
    """A service applied at runtime joins the budget the same way: a pinned floor that does not fit is
    refused with the numbers, and nothing of it serves or runs."""
    if backend != "process":
        pytest.skip("the check is the budget's, not the backend's: the process backend is enough")
    import asyncio

    from engine.errors import ConfigError
    from tests.test_deployments import deployment, run_engine, write_project

    root = write_project(tmp_path / "v1", "v1")

    async def scenario(engine) -> None:
        with pytest.raises(ConfigError) as err:
            await engine.apply(deployment(root))
        assert "shop-dev/python (min_idle=3 × memory_mb=256)" in str(err.value), err.value
        assert "warm_budget_workers=2" in str(err.value), err.value
        await asyncio.sleep(0.5)
        assert engine.budget.used_workers == 0 and engine.budget.pinned_workers == 0
        reply = await asyncio.to_thread(
            httpx.get, f"http://127.0.0.1:{engine.settings.port}/version", headers={"Host": "shop-dev.localhost"})
        assert reply.status_code == 404, reply.text

    run_engine(backend, scenario, warm_budget_workers=2, memory_mb=256, services={"shop-dev": {"min_idle": 3}})
