"""Resource limits of docker workers: a fork bomb, a memory bomb and a CPU loop, on each runtime.

Each bomb ends in its documented status (README, "Backends"), measured on this engine's defaults
(pids 64 under runc / 128 under runsc, memory 256 MiB, 0.5 CPU):

| bomb        | runc                                                | runsc (gVisor)                                      |
|-------------|-----------------------------------------------------|-----------------------------------------------------|
| fork bomb   | forks fail inside with EAGAIN (pids limit); the     | the sandbox's own threads count against the pids    |
|             | handler answers 200, the worker is dirty (children  | limit, so the whole sandbox dies: 502 "the worker   |
|             | alive) and its container is removed                 | exited with code 2"                                 |
| memory bomb | 502 "... killed because it hit its memory limit"    | the same                                            |
| CPU loop    | 504 at the function's time limit, worker killed     | the same                                            |

Meanwhile the engine keeps answering: requests to another function of the same service (another
worker) and to a second service (the same project served under a second name) succeed while the
bomb runs. Afterwards the bomb's container is gone. No container outlives the module.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.docker_helpers import engine_id_of, log_records, wait_for

PROJECTS = Path(__file__).resolve().parent / "projects"
LIMITS = PROJECTS / "limits"
ENGINE_LABEL = "io.functions-engine.engine"
CPU_LIMIT_S = 2.0
CONFIG = {
    "min_idle": 2,  # a warm worker besides the bomb's, for the concurrent requests
    "max_workers": 4,
    "services": {"limits": {"functions": {"/cpu-loop": {"time_limit_s": CPU_LIMIT_S}}}},
}
PROBE_TIMEOUT_S = 5.0  # a probe slower than this during a bomb counts as the engine not answering


# --- helpers -----------------------------------------------------------------------------------


def containers_of(engine_id: str) -> list[str]:
    """Names of every container (running or not) labelled with this engine id: `docker ps -a --filter label=`."""
    out = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label={ENGINE_LABEL}={engine_id}", "--format", "{{.Names}}"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout
    return out.split()


def worker_of(engine, invocation_id: str) -> tuple[str | None, str | None]:
    """(container name, container hostname) of the worker that ran an invocation, as far as logged:
    the name from the `invocation` line, the hostname from the handler's `CONTAINER` line."""

    def find():
        name = hostname = None
        for record in log_records(engine):
            if record.get("invocation_id") != invocation_id:
                continue
            if record.get("event") == "invocation":
                name = record.get("worker_id") or None
            message = str(record.get("message", ""))
            if record.get("event") == "handler_log" and message.startswith("CONTAINER "):
                hostname = message.removeprefix("CONTAINER ")
        return (name, hostname) if name or hostname else None

    return wait_for(find, 10, f"a log line naming the worker of {invocation_id}")


def get(engine, service: str, path: str, timeout: float = 60, **params: str) -> httpx.Response:
    with httpx.Client(base_url=engine.url, timeout=timeout) as client:
        return client.get(path, params=params, headers={"Host": f"{service}.localhost:{engine.port}"})


class Prober(threading.Thread):
    """Calls /ok on the bomb's service and on the second service, in turn, until stopped."""

    def __init__(self, engine) -> None:
        super().__init__(daemon=True)
        self.engine = engine
        self.results: list[tuple[str, int | str, float, float]] = []  # service, status, started, seconds
        self.stopping = threading.Event()

    def run(self) -> None:
        services = ("limits", "other")
        while not self.stopping.is_set():
            service = services[len(self.results) % 2]
            started = time.monotonic()
            try:
                status: int | str = get(self.engine, service, "/ok", timeout=PROBE_TIMEOUT_S).status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            self.results.append((service, status, started, time.monotonic() - started))
            time.sleep(0.05)


def bomb(engine, path: str, **params: str) -> tuple[httpx.Response, float, list]:
    """Run one bomb while probing the engine; returns its reply, its duration and the probes made meanwhile."""
    prober = Prober(engine)
    prober.start()
    wait_for(lambda: len(prober.results) >= 2, 20, "the probes to start")
    started = time.monotonic()
    try:
        response = get(engine, "limits", path, **params)
    finally:
        elapsed = time.monotonic() - started
        prober.stopping.set()
        prober.join(PROBE_TIMEOUT_S + 5)
    during = [p for p in prober.results if started <= p[2] <= started + elapsed]
    return response, elapsed, during


def assert_engine_kept_answering(probes: list) -> None:
    """Probes started during the bomb, to both services, all answered 200 in time."""
    assert {p[0] for p in probes} == {"limits", "other"}, f"too few probes during the bomb: {probes}"
    failed = [p for p in probes if p[1] != 200 or p[3] > PROBE_TIMEOUT_S]
    assert not failed, f"requests to the other worker/service failed during the bomb: {failed}"


def assert_container_gone(engine, response: httpx.Response) -> None:
    name, hostname = worker_of(engine, response.headers["x-request-id"])
    engine_id = engine_id_of(engine)

    def gone() -> bool:
        if name is not None and name in containers_of(engine_id):
            return False
        if hostname is not None:
            return not subprocess.run(["docker", "ps", "-aq", "--filter", f"id={hostname}"],
                                      capture_output=True, text=True, timeout=30, check=True).stdout.strip()
        return True

    wait_for(gone, 15, f"the bomb's container {name or hostname} to be removed")


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def started_engines():
    """Every engine of this module; at its end, after they stopped, none may have left a container."""
    engines: list = []
    yield engines
    for engine in engines:
        engine.stop()
    ids = [engine_id_of(engine) for engine in engines]
    wait_for(lambda: not any(containers_of(i) for i in ids), 30, "every container of this module's engines to be removed")


@pytest.fixture(scope="module")
def engine(module_engine_factory, docker_backend, started_engines, request):
    request.getfixturevalue("docker_available")
    running = module_engine_factory(
        f"limits={LIMITS}", f"other={LIMITS}", backend=docker_backend, config=CONFIG, args=["--domain", "localhost"],
    )
    started_engines.append(running)
    yield running
    running.stop()


@pytest.fixture
def warm(engine):
    """Each bomb starts with the pools full again (the previous bomb's worker replaced)."""
    wait_for(lambda: httpx.get(engine.admin_url + "/readyz", timeout=2).status_code == 200, 60, "a ready engine")
    return engine


# --- tests -------------------------------------------------------------------------------------


def test_fork_bomb(warm, docker_backend):
    """runc: fork fails inside (EAGAIN at the pids limit) and the handler answers; runsc: the sandbox dies (502)."""
    response, elapsed, probes = bomb(warm, "/fork-bomb", seconds="3")
    if docker_backend == "docker":
        assert response.status_code == 200, response.text
        outcome = response.json()
        assert outcome["fork_error"] == "EAGAIN" and outcome["failed"] > 0, outcome
    else:
        assert response.status_code == 502, response.text
        assert response.text.startswith("The function's worker failed"), response.text
    assert elapsed < 10, elapsed
    assert_engine_kept_answering(probes)
    assert_container_gone(warm, response)


def test_memory_bomb_is_502_saying_the_memory_limit_was_hit(warm):
    response, elapsed, probes = bomb(warm, "/memory-bomb", mib="2048")
    assert response.status_code == 502, response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert "memory limit" in response.text, response.text
    assert elapsed < 10, elapsed
    assert_engine_kept_answering(probes)
    assert_container_gone(warm, response)


def test_cpu_loop_is_504_at_the_time_limit(warm):
    response, elapsed, probes = bomb(warm, "/cpu-loop")
    assert response.status_code == 504, response.text
    assert "timed out" in response.text
    assert CPU_LIMIT_S <= elapsed < CPU_LIMIT_S + 1.5, elapsed
    assert_engine_kept_answering(probes)
    assert_container_gone(warm, response)


def test_after_the_bombs_both_services_answer(warm):
    for service in ("limits", "other"):
        response = get(warm, service, "/ok")
        assert response.status_code == 200 and response.json()["ok"] is True
