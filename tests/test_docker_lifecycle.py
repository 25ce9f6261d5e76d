"""Lifecycle of docker workers and of the engine around them, on real daemons (no mocks).

- A timed-out invocation is a 504 and its container is removed.
- A worker container killed from outside (`docker kill`) mid-request is a 502, and the pool refills.
- An engine killed with SIGKILL leaves orphans; the next engine on the same daemon removes them at
  start-up (their owner process is dead) and leaves a live engine's workers alone.
- No daemon at start: the engine exits non-zero and says where it looked and what to do.
- The daemon going away mid-run (stopped, or killed): in-flight requests fail fast (502/503, not
  the time limit), /readyz turns 503, new requests fail fast, and once the daemon is back the pool
  rebuilds and the containers that could not be removed meanwhile are removed. This runs against a
  second dockerd this module starts in a temp dir (its own socket, data and exec roots, no bridge,
  no iptables), so stopping it never disturbs the daemon everyone else uses.
- `docker_reap = "all"` removes every managed container at start-up; the default only dead owners'.

Every engine's containers are gone at the end of the module (checked on both daemons).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.docker_helpers import engine_id_of, log_records, second_daemon_with_images, wait_for

from engine import images
from engine.backends.docker_reaper import owner_token

PROJECTS = Path(__file__).resolve().parent / "projects"
LIMITS = PROJECTS / "limits"
MANAGED_LABEL = "io.functions-engine.managed"
ENGINE_LABEL = "io.functions-engine.engine"
OWNER_LABEL = "io.functions-engine.owner"
SLEEP_LIMIT_S = 4.0
CONFIG = {"min_idle": 1, "max_workers": 2, "services": {"limits": {"functions": {"/sleep": {"time_limit_s": SLEEP_LIMIT_S}}}}}
# On the second daemon the time limit is long, so a fast failure cannot be mistaken for a 504.
OUTAGE_LIMIT_S = 30.0
OUTAGE_CONFIG = {"min_idle": 1, "max_workers": 2, "services": {"limits": {"functions": {"/sleep": {"time_limit_s": OUTAGE_LIMIT_S}}}}}
FAIL_FAST_S = 8.0  # pool back-off (5 s at most) plus a failed start; far below the time limit


# --- helpers -----------------------------------------------------------------------------------


def docker_cli(*args: str, host: str | None = None, check: bool = True) -> str:
    env = dict(os.environ)
    if host:
        env["DOCKER_HOST"] = host
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60, env=env, check=check).stdout


def containers_of(engine_id: str, host: str | None = None) -> list[str]:
    """Ids of every container (running or not) labelled with this engine id: `docker ps -a --filter label=`."""
    return docker_cli("ps", "-aq", "--no-trunc", "--filter", f"label={ENGINE_LABEL}={engine_id}", host=host).split()


def container_of(engine, invocation_id: str) -> str:
    """The hostname (= short container id) a /sleep invocation logged before it sleeps."""

    def find():
        for record in log_records(engine):
            message = str(record.get("message", ""))
            if record.get("invocation_id") == invocation_id and message.startswith("CONTAINER "):
                return message.removeprefix("CONTAINER ")
        return None

    return wait_for(find, 30, f"the CONTAINER line of {invocation_id}")


def get(engine, path: str, timeout: float = 60, request_id: str | None = None, **params: str) -> httpx.Response:
    headers = {"X-Request-Id": request_id} if request_id else {}
    with httpx.Client(base_url=engine.url, timeout=timeout) as client:
        return client.get(path, params=params, headers=headers)


def readyz(engine) -> int:
    try:
        return httpx.get(engine.admin_url + "/readyz", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def is_running(engine) -> bool:
    return engine.proc.poll() is None


# --- a second daemon ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def second_daemon(docker_available):
    """A second dockerd with the base and runner images loaded (saves the engine a debootstrap)."""
    yield from second_daemon_with_images()


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def started_engines():
    """Every engine of this module on the main daemon; at its end, none may have left a container."""
    engines: list = []
    yield engines
    for engine in engines:
        engine.stop()
    ids = [engine_id_of(engine) for engine in engines if "docker_host" not in engine.extra]
    wait_for(lambda: not any(containers_of(i) for i in ids), 30, "every container of this module's engines to be removed")


@pytest.fixture(scope="module")
def engine(module_engine_factory, docker_backend, started_engines, request):
    request.getfixturevalue("docker_available")
    running = module_engine_factory(f"limits={LIMITS}", backend=docker_backend, config=CONFIG)
    started_engines.append(running)
    yield running
    running.stop()


def wait_ready(engine, timeout: float = 60) -> None:
    wait_for(lambda: readyz(engine) == 200, timeout, "/readyz to answer 200")


# --- timeouts and outside kills ----------------------------------------------------------------


def test_timeout_is_504_and_the_container_is_removed(engine):
    wait_ready(engine)
    request_id = uuid.uuid4().hex
    started = time.monotonic()
    response = get(engine, "/sleep", request_id=request_id, seconds="60")
    elapsed = time.monotonic() - started
    assert response.status_code == 504, response.text
    assert SLEEP_LIMIT_S <= elapsed < SLEEP_LIMIT_S + 1.5, elapsed
    short_id = container_of(engine, request_id)
    wait_for(lambda: not docker_cli("ps", "-aq", "--filter", f"id={short_id}").strip(), 15,
             f"the timed-out container {short_id} to be removed")


def test_a_container_killed_from_outside_is_502_and_the_pool_refills(engine):
    wait_ready(engine)
    engine_id = engine_id_of(engine)
    request_id = uuid.uuid4().hex
    with ThreadPoolExecutor(1) as pool:
        reply = pool.submit(get, engine, "/sleep", request_id=request_id, seconds="60")
        short_id = container_of(engine, request_id)
        busy = docker_cli("ps", "-q", "--no-trunc", "--filter", f"label={ENGINE_LABEL}={engine_id}", "--filter", f"id={short_id}").split()
        assert len(busy) == 1, f"the busy worker {short_id} carries the engine's label"
        docker_cli("kill", busy[0])
        response = reply.result(timeout=30)
    assert response.status_code == 502, response.text
    assert "SIGKILL" in response.text and "by the engine" not in response.text, response.text
    wait_ready(engine)
    assert get(engine, "/ok").status_code == 200
    wait_for(lambda: busy[0] not in containers_of(engine_id), 15, "the killed container to be removed")


# --- engine restarts ---------------------------------------------------------------------------


def test_a_killed_engines_containers_are_removed_when_the_next_one_starts(engine, engine_factory, docker_backend, started_engines):
    """SIGKILL leaves orphans (no clean-up ran); the next engine reaps them, not a live engine's workers."""
    live_engine_id = engine_id_of(engine)
    live = set(containers_of(live_engine_id))
    first = engine_factory(f"limits={LIMITS}", backend=docker_backend, config={"min_idle": 2})
    started_engines.append(first)
    first_id = engine_id_of(first)
    orphans = set(wait_for(lambda: len(containers_of(first_id)) >= 2 and containers_of(first_id), 30, "two workers"))
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(30)
    assert set(containers_of(first_id)) == orphans, "the premise: a killed engine leaves its containers"
    second = engine_factory(f"limits={LIMITS}", backend=docker_backend, config={"min_idle": 1})
    started_engines.append(second)
    assert containers_of(first_id) == [], "the killed engine's containers outlived the next start-up"
    assert live <= set(containers_of(live_engine_id)), "a live engine's workers must not be reaped"
    second_id = engine_id_of(second)
    assert second.stop() == 0
    wait_for(lambda: not containers_of(second_id), 15, "a stopped engine's containers to be removed")


@pytest.mark.docker
def test_no_daemon_at_start_exits_non_zero_with_a_clear_message(engine_factory):
    running = engine_factory(
        f"limits={LIMITS}", backend="docker", env={"DOCKER_HOST": "unix:///nonexistent.sock"}, wait_ready=False,
    )
    code = running.proc.wait(60)
    assert code != 0
    output = running.logs()
    assert "no Docker daemon reachable at unix:///nonexistent.sock" in output, output[-2000:]
    assert "DOCKER_HOST" in output and "scripts/ensure-docker" in output, output[-2000:]


# --- the daemon going away ---------------------------------------------------------------------


# Only a daemon that takes its containers with it (stopped without live-restore) can fail an
# invocation: the channel does not pass through dockerd, so a daemon that is killed (its containers
# run on under their shims) or restarted with live-restore leaves warm workers serving
# (tests/test_docker_direct_channel.py).
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM], ids=["stopped"])
def test_daemon_gone_mid_run_fails_fast_and_the_pool_rebuilds_when_it_is_back(
    second_daemon, engine_factory, docker_backend, stop_signal
):
    running = engine_factory(
        f"limits={LIMITS}", backend=docker_backend, config=OUTAGE_CONFIG, env={"DOCKER_HOST": second_daemon.host},
    )
    running.extra["docker_host"] = second_daemon.host
    engine_id = engine_id_of(running)
    try:
        request_id = uuid.uuid4().hex
        with ThreadPoolExecutor(1) as pool:
            reply = pool.submit(get, running, "/sleep", request_id=request_id, seconds="120")
            container_of(running, request_id)  # the invocation is in flight
            # ... and the busy worker's replacement is up, so the daemon goes away under a steady
            # pool (no create cut off halfway) and the test means the same on every run.
            wait_for(lambda: sum(r.get("event") == "worker_ready" for r in log_records(running)) >= 2, 30,
                     "the busy worker's replacement")
            stopped_at = time.monotonic()
            second_daemon.stop(stop_signal)
            response = reply.result(timeout=OUTAGE_LIMIT_S + 10)
        assert response.status_code in (502, 503), response.text
        assert time.monotonic() - stopped_at < FAIL_FAST_S, "the in-flight request waited for the time limit"

        wait_for(lambda: readyz(running) == 503, 10, "/readyz to turn 503 while the daemon is gone")
        assert "unreachable" in httpx.get(running.admin_url + "/readyz", timeout=5).text
        started = time.monotonic()
        during = get(running, "/ok", timeout=30)
        assert during.status_code in (502, 503), during.text
        assert time.monotonic() - started < FAIL_FAST_S
        assert "unreachable" in during.text, during.text
        assert is_running(running), "the engine must outlive its daemon"

        second_daemon.start()
        wait_ready(running, 60)
        assert get(running, "/ok").status_code == 200
        # What could not be removed while the daemon was gone is removed now: only live workers remain.
        def only_live_workers() -> bool:
            states = docker_cli("ps", "-a", "--filter", f"label={ENGINE_LABEL}={engine_id}", "--format", "{{.State}}",
                                host=second_daemon.host).split()
            return bool(states) and all(state == "running" for state in states)

        wait_for(only_live_workers, 30, "the dead workers' containers to be removed from the second daemon")
    finally:
        if not second_daemon.running:
            second_daemon.start()
        running.stop()
    wait_for(lambda: not containers_of(engine_id, host=second_daemon.host), 15, "the engine's containers to be removed")


@pytest.mark.docker
def test_reap_all_removes_every_managed_container_at_start_up(second_daemon, engine_factory):
    """Default ("dead-owners"): a container whose owner lives is left alone; "all": it is removed."""
    owner = owner_token()  # this test process: alive
    foreign = docker_cli(
        "create", "--network", "none", "--label", f"{MANAGED_LABEL}=true", "--label", f"{ENGINE_LABEL}=someone-else",
        "--label", f"{OWNER_LABEL}={owner}", images.BASE_TAG, "true", host=second_daemon.host,
    ).strip()
    try:
        for reap, survives in (("dead-owners", True), ("all", False)):
            running = engine_factory(
                f"limits={LIMITS}", backend="docker", config={"docker_reap": reap, "min_idle": 1},
                env={"DOCKER_HOST": second_daemon.host},
            )
            running.extra["docker_host"] = second_daemon.host
            engine_id = engine_id_of(running)
            assert (foreign in second_daemon.all_containers()) is survives, reap
            assert running.stop() == 0
            wait_for(lambda: not containers_of(engine_id, host=second_daemon.host), 15, "the engine's containers to go")
    finally:
        docker_cli("rm", "-f", foreign, host=second_daemon.host, check=False)
