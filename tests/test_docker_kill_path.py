"""The kill path on real daemons: a timed-out worker is answered at once and removed until it is gone.

Attacks, each through HTTP and a real Docker daemon (no mocks):
- A CPU-spinning handler gets its 504 at the deadline even when Docker cannot remove its container
  then (the daemon hangs: a second dockerd of this module's own is stopped with SIGSTOP), and the
  container is removed once Docker answers again.
- Flooding a spinning function while every removal fails (an immutable file in each container's
  writable layer, so `docker rm -f` kills it but cannot delete it) never gives the pool more than
  `max_workers` containers: workers being removed count against the pool until they are gone.
- A container whose removal failed is not forgotten: it is retried (a log line per retry naming
  the container and the error) and removed as soon as Docker can.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import docker.errors
import httpx
import pytest

from tests.docker_helpers import engine_id_of, log_records, second_daemon_with_images, wait_for

PROJECTS = Path(__file__).resolve().parent / "projects"
LIMITS = PROJECTS / "limits"
ENGINE_LABEL = "io.functions-engine.engine"
SPIN_LIMIT_S = 2.0
MAX_WORKERS = 2
CONFIG = {
    "min_idle": 1, "max_workers": MAX_WORKERS, "acquire_timeout_s": 2,
    "services": {"limits": {"functions": {"/cpu-loop": {"time_limit_s": SPIN_LIMIT_S}}}},
}
# The deadline is the contract; the rest is a loaded two-core machine answering.
ANSWER_SLACK_S = 1.5
HOLD_FILE = ".removal-hold"


# --- helpers -----------------------------------------------------------------------------------


def get(engine, path: str, timeout: float = 60, request_id: str | None = None) -> httpx.Response:
    headers = {"X-Request-Id": request_id} if request_id else {}
    with httpx.Client(base_url=engine.url, timeout=timeout) as client:
        return client.get(path, headers=headers)


def workers_gauge(engine, state: str) -> float:
    """functions_engine_workers{state=...} of the limits/python pool, from /metrics (no Docker involved)."""
    text = httpx.get(engine.admin_url + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("functions_engine_workers{") and f'state="{state}"' in line and 'service="limits"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no functions_engine_workers series for state {state}:\n{text[:2000]}")


def container_of(engine, invocation_id: str) -> str:
    """The hostname (= short container id) a /cpu-loop invocation logged before it spins."""

    def find():
        for record in log_records(engine):
            message = str(record.get("message", ""))
            if record.get("invocation_id") == invocation_id and message.startswith("CONTAINER "):
                return message.removeprefix("CONTAINER ")
        return None

    return wait_for(find, 30, f"the CONTAINER line of {invocation_id}")


class RemovalHold:
    """Makes Docker's removal of chosen containers fail for real: an immutable file (`chattr +i`) in
    the container's writable layer, so `docker rm -f` kills the container and then cannot delete it."""

    def __init__(self, client: docker.DockerClient) -> None:
        if os.geteuid() != 0:
            pytest.fail("holding a container's removal needs root (chattr in /var/lib/docker)")
        self.client = client
        self.files: dict[str, Path] = {}  # container id -> its immutable file

    def hold(self, container_id: str) -> bool:
        if container_id in self.files:
            return True
        try:
            upper = self.client.api.inspect_container(container_id)["GraphDriver"]["Data"]["UpperDir"]
        except (docker.errors.NotFound, KeyError, TypeError):
            return False
        path = Path(upper) / HOLD_FILE
        try:
            path.touch()
        except FileNotFoundError:  # removed meanwhile
            return False
        subprocess.run(["chattr", "+i", str(path)], check=True, capture_output=True, timeout=30)
        self.files[container_id] = path
        return True

    def release_all(self) -> None:
        for path in self.files.values():
            if path.exists():
                subprocess.run(["chattr", "-i", str(path)], check=False, capture_output=True, timeout=30)

    def full_id(self, short: str) -> str:
        return self.client.api.inspect_container(short)["Id"]


def labelled(client: docker.DockerClient, engine_id: str) -> list[str]:
    """Ids of every container (running, dead, being created) with this engine's label."""
    return [c["Id"] for c in client.api.containers(all=True, filters={"label": f"{ENGINE_LABEL}={engine_id}"})]


def exists(client: docker.DockerClient, container_id: str) -> bool:
    try:
        client.api.inspect_container(container_id)
        return True
    except docker.errors.NotFound:
        return False


@pytest.fixture
def client(docker_available):
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture(scope="module")
def second_daemon(docker_available):
    yield from second_daemon_with_images()


# --- attacks -----------------------------------------------------------------------------------


@pytest.mark.docker
def test_a_spinning_handler_gets_its_504_at_the_deadline_while_docker_hangs(second_daemon, engine_factory, docker_backend):
    """The daemon is frozen (SIGSTOP) mid-invocation: the 504 still comes at the time limit; the worker
    counts as `removing` until Docker answers again and its container is gone."""
    config = dict(CONFIG, min_idle=MAX_WORKERS)  # both workers warm: no create in flight when the daemon stops
    running = engine_factory(f"limits={LIMITS}", backend=docker_backend, config=config,
                             env={"DOCKER_HOST": second_daemon.host})
    engine_id = engine_id_of(running)
    remote = docker.DockerClient(base_url=second_daemon.host, timeout=60)
    assert second_daemon.proc is not None
    try:
        request_id = uuid.uuid4().hex
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            reply = pool.submit(get, running, "/cpu-loop", 60, request_id)
            container = container_of(running, request_id)  # spinning now
            os.kill(second_daemon.proc.pid, signal.SIGSTOP)
            try:
                response = reply.result(timeout=SPIN_LIMIT_S + 30)
                elapsed = time.monotonic() - started
                removing = workers_gauge(running, "removing")
            finally:
                os.kill(second_daemon.proc.pid, signal.SIGCONT)
        assert response.status_code == 504, response.text
        assert elapsed < SPIN_LIMIT_S + ANSWER_SLACK_S, f"the 504 waited for Docker: {elapsed:.1f} s"
        assert removing == 1, "the timed-out worker must count against the pool while its removal is under way"
        wait_for(lambda: not exists(remote, container), 60, "the timed-out container to be removed once Docker answers")
        wait_for(lambda: workers_gauge(running, "removing") == 0, 30, "the removing gauge to drop")
        assert get(running, "/ok").status_code == 200
    finally:
        running.stop()
        remote.close()
    wait_for(lambda: not labelled(docker.DockerClient(base_url=second_daemon.host), engine_id), 30,
             "the engine's containers to be removed")


@pytest.mark.docker
def test_timing_out_in_a_flood_cannot_run_more_than_max_workers_containers(engine_factory, docker_backend, client):
    """Clients flood a spinning function while every removal fails: the containers with the engine's
    label (alive or being removed) never exceed max_workers; once removals succeed, all are removed."""
    running = engine_factory(f"limits={LIMITS}", backend=docker_backend, config=CONFIG)
    engine_id = engine_id_of(running)
    hold = RemovalHold(client)
    most, stop = [0], threading.Event()

    def watch() -> None:  # hold every new container of this engine, count them all
        watcher = docker.from_env()
        try:
            holder = RemovalHold(watcher)
            holder.files = hold.files
            while not stop.is_set():
                ids = labelled(watcher, engine_id)
                most[0] = max(most[0], len(ids))
                for container_id in ids:
                    holder.hold(container_id)
                time.sleep(0.05)
        finally:
            watcher.close()

    def flood(until: float) -> list[int]:
        statuses = []
        while time.monotonic() < until:
            statuses.append(get(running, "/cpu-loop", 30).status_code)
        return statuses

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        until = time.monotonic() + 12
        with ThreadPoolExecutor(6) as pool:
            statuses = [s for batch in pool.map(flood, [until] * 6) for s in batch]
        assert set(statuses) <= {503, 504}, statuses
        assert statuses.count(504) >= MAX_WORKERS, statuses
        assert most[0] <= MAX_WORKERS, f"{most[0]} containers of one pool with max_workers={MAX_WORKERS}"
        assert workers_gauge(running, "removing") == MAX_WORKERS
        held = list(hold.files)
        assert len(held) == MAX_WORKERS, held
        stop.set()
        watcher.join(10)
        hold.release_all()
        wait_for(lambda: not any(exists(client, c) for c in held), 40, "the held containers to be removed")
        wait_for(lambda: get(running, "/ok").status_code == 200, 60, "the pool to serve again")
    finally:
        stop.set()
        watcher.join(10)
        hold.release_all()
        running.stop()
    wait_for(lambda: not labelled(client, engine_id), 30, "the engine's containers to be removed")


@pytest.mark.docker
def test_a_container_whose_removal_fails_is_retried_until_it_is_gone(engine_factory, docker_backend, client):
    """A timed-out container Docker cannot delete is retried with a log line per retry (container and
    error) and removed once Docker can, well after a single retry would have given up."""
    running = engine_factory(f"limits={LIMITS}", backend=docker_backend, config=CONFIG)
    engine_id = engine_id_of(running)
    hold = RemovalHold(client)
    try:
        request_id = uuid.uuid4().hex
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            reply = pool.submit(get, running, "/cpu-loop", 60, request_id)
            container = hold.full_id(container_of(running, request_id))
            assert hold.hold(container)
            response = reply.result(timeout=SPIN_LIMIT_S + 30)
            elapsed = time.monotonic() - started
        assert response.status_code == 504, response.text
        assert elapsed < SPIN_LIMIT_S + ANSWER_SLACK_S, elapsed

        def retries() -> list[dict]:
            return [r for r in log_records(running)
                    if r.get("event") == "docker_remove_retry" and r.get("container_id") == container[:12]]

        wait_for(lambda: len(retries()) >= 3, 30, "three failed removals of the held container")
        assert exists(client, container)
        assert not client.api.inspect_container(container)["State"]["Running"], "a timed-out worker must be killed"
        line = retries()[0]
        assert re.match(r"engine-limits-python-", line["container"]), line
        assert "operation not permitted" in line["error"], line
        assert workers_gauge(running, "removing") == 1
        hold.release_all()
        wait_for(lambda: not exists(client, container), 30, "the container to be removed once Docker can")
        wait_for(lambda: workers_gauge(running, "removing") == 0, 10, "the removing gauge to drop")
        assert any(r.get("event") == "docker_removed_after_retries" for r in log_records(running))
    finally:
        hold.release_all()
        running.stop()
    wait_for(lambda: not labelled(client, engine_id), 30, "the engine's containers to be removed")
