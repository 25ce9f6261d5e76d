"""Readiness means "this engine can serve", never "every tenant's code is good" (engine/app.py).

A service whose worker cannot start (its module calls `os._exit(3)` at import) sits beside a good
one and one whose module raises at import (a load error: the function answers 500, the worker
itself is fine, as spec/behavior.md says). The engine turns ready once every pool's first warm-up
is over, the good service answers, and the broken one's requests are answered at once with a 503
naming the boot failure; the failure is a metric and a log line, not the pod's readiness.
"""

from __future__ import annotations

import time

import httpx
import pytest

from bench import steady
from tests.conftest import PROJECTS
from tests.docker_helpers import log_records, wait_for

GOOD = PROJECTS / "tenant-good"
BOOT_EXIT = PROJECTS / "tenant-boot-exit"
BOOT_RAISE = PROJECTS / "tenant-boot-raise"
BOOT_SEGV = PROJECTS / "tenant-boot-segv"


@pytest.fixture
def engine(engine_factory, docker_available):
    return engine_factory(
        f"good={GOOD}", f"boot-exit={BOOT_EXIT}", f"boot-raise={BOOT_RAISE}", f"boot-segv={BOOT_SEGV}", backend="docker",
        args=["--domain", "localhost"], config={"min_idle": 1, "max_workers": 2}, ready_timeout=180,
    )


def _get(engine, service: str, path: str) -> httpx.Response:
    with engine.client() as client:
        return client.get(path, headers={"Host": f"{service}.localhost:{engine.port}"})


def _samples(engine, name: str, service: str) -> float:
    return steady.metric_total(steady.scrape(engine.admin_url), name, service=service, runtime="python")


def test_a_service_that_exits_at_import_does_not_take_the_engine_out_of_readiness(engine):
    """The engine factory waited for /readyz 200; it stays 200, and says which pool is failing."""
    for _ in range(3):
        ready = httpx.get(engine.admin_url + "/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        time.sleep(0.5)
    assert "boot-exit/python" in ready.text and "good/python" not in ready.text, ready.text
    assert _get(engine, "good", "/ok").status_code == 200


def test_a_service_that_cannot_boot_is_answered_at_once_with_the_boot_failure(engine):
    """Not after acquire_timeout_s (10 s): a 503 with Retry-After whose body says why the worker could not start."""
    for _ in range(3):
        started = time.monotonic()
        reply = _get(engine, "boot-exit", "/hello")
        took = time.monotonic() - started
        assert reply.status_code == 503, reply.text
        assert took < 2.0, f"the broken service took {took:.1f} s to answer"
        assert "the function's worker could not start" in reply.text, reply.text
        assert "the worker exited with code 3" in reply.text, reply.text
        assert int(reply.headers["Retry-After"]) >= 1


def test_a_boot_failure_is_a_metric_and_a_log_line(engine):
    """`pool_healthy` is exactly 0 for the broken pool and 1 for the others; start failures are counted
    for it alone; `worker_start_failed` names the pool and the exit."""
    assert _samples(engine, "functions_engine_pool_healthy", "boot-exit") == 0
    assert _samples(engine, "functions_engine_pool_healthy", "good") == 1
    assert _samples(engine, "functions_engine_pool_healthy", "boot-raise") == 1
    assert _samples(engine, "functions_engine_worker_start_failures_total", "boot-exit") >= 1
    assert _samples(engine, "functions_engine_worker_start_failures_total", "good") == 0
    assert _samples(engine, "functions_engine_worker_start_failures_total", "boot-raise") == 0
    failures = wait_for(
        lambda: [r for r in log_records(engine) if r.get("event") == "worker_start_failed"], 10,
        "a worker_start_failed line",
    )
    assert {r["pool"] for r in failures} <= {"boot-exit/python", "boot-segv/python"}, failures
    exit_line = next(r for r in failures if r["pool"] == "boot-exit/python")
    assert "the worker exited with code 3" in exit_line["error"], exit_line


def test_a_runner_that_crashes_while_loading_logs_its_stderr_with_the_start_failure(engine):
    """A segfault at import: the runner's own crash output (faulthandler's traceback) is in the
    `worker_start_failed` line, and the service's requests get the signal as the reason."""
    failure = wait_for(
        lambda: next((r for r in log_records(engine)
                      if r.get("event") == "worker_start_failed" and r.get("pool") == "boot-segv/python"), None),
        30, "the boot-segv start failure",
    )
    assert "SIGSEGV" in failure["error"], failure
    assert "Segmentation fault" in (failure.get("stderr") or ""), failure
    assert "hello.py" in failure["stderr"], failure
    reply = _get(engine, "boot-segv", "/hello")
    assert reply.status_code == 503 and "could not start" in reply.text and "SIGSEGV" in reply.text, reply.text


def test_a_module_that_raises_at_import_is_a_500_from_the_function_not_a_boot_failure(engine):
    """spec/behavior.md: a load error is the function's 500 with the load error; its worker is healthy."""
    reply = _get(engine, "boot-raise", "/hello")
    assert reply.status_code == 500, reply.text
    assert "broken at import" in reply.text, reply.text
