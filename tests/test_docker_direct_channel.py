"""The docker backend's direct channel (engine/backends/docker_channel.py), attacked and restarted.

Each worker's frames travel over a Unix socket the engine listens on, in a directory bind-mounted
read-only into that container alone; the engine accepts one connection and closes the listener.
These tests try to get past that through handlers (a second connect, a child process writing
frames, fds 0/1 closed), through Docker (a runner that never connects or says the wrong token, a
directory left by a killed engine), and take dockerd away under load: with live-restore, warm
workers keep serving and new ones start once it is back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import docker
import httpx
import pytest

from engine import images, protocol
from engine.backends.base import WorkerLimits, WorkerSpec
from engine.backends.docker import DockerBackend
from engine.backends.docker_channel import channels_root
from engine.errors import BootstrapError
from engine.worker import Worker
from tests.conftest import PROJECTS
from tests.docker_helpers import engine_id_of, log_records, second_daemon_with_images, wait_for

ATTACKS = PROJECTS / "channel-attacks"
CONFIG = {"min_idle": 1, "max_workers": 1}


@pytest.fixture(scope="module")
def engine(module_engine_factory, docker_backend, docker_available):
    running = module_engine_factory(f"attacks={ATTACKS}", backend=docker_backend, config=CONFIG)
    yield running
    running.stop()


def _get(engine, path: str, timeout: float = 60) -> httpx.Response:
    with httpx.Client(base_url=engine.url, timeout=timeout) as client:
        return client.get(path)


# --- handlers attacking their channel ----------------------------------------------------------


def test_a_handler_cannot_connect_to_its_channel_socket_again(engine):
    """The socket is gone once the runner connected: a second connect finds nothing, the directory
    is empty, and the runner took the path and token out of the environment."""
    reply = _get(engine, "/reconnect")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["connect"] in ("FileNotFoundError", "ConnectionRefusedError"), body
    assert body["listing"] == [], body
    assert body["env"] == [], body
    after = _get(engine, "/ok")
    assert after.status_code == 200, after.text


def test_a_node_handler_cannot_connect_to_its_channel_socket_or_cut_it_by_closing_fds(engine):
    """The Node runner uses the socket itself as its protocol stream: a second connect finds
    nothing, closing fds 0/1 changes nothing, and the environment no longer names the socket."""
    reply = _get(engine, "/js_reconnect")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["connect"] in ("ENOENT", "ECONNREFUSED"), body
    assert body["listing"] == [] and body["env"] == [], body
    for _ in range(3):
        again = _get(engine, "/js_reconnect")
        assert again.status_code == 200, again.text


def test_a_child_process_cannot_write_frames_to_the_channel(engine):
    """A child tries the socket path and writes a forged `result` to every descriptor it has: the
    reply is the handler's own, and the forged frame is at most the handler's log output."""
    reply = _get(engine, "/child_write")
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"child_exit": 0}
    lines = [str(r.get("message", "")) for r in log_records(engine)]
    assert any(line.startswith("child connect ") and "connected" not in line for line in lines), lines[-20:]
    assert _get(engine, "/ok").status_code == 200


def test_closing_fd_0_and_1_does_not_cut_the_channel(engine):
    """The protocol is not on fds 0/1 as the handler sees them: closing them changes nothing."""
    first = _get(engine, "/close_stdio")
    assert first.status_code == 200, first.text
    for _ in range(3):
        again = _get(engine, "/ok")
        assert again.status_code == 200, again.text


def test_the_channel_directory_is_the_workers_uid_only(engine):
    """On the host: one directory per worker, owned by uid 10001 with mode 0700, its socket gone."""
    engine_dir = channels_root() / engine_id_of(engine)
    workers = [p for p in engine_dir.iterdir() if p.is_dir()]
    assert workers, f"no worker directory under {engine_dir}"
    for path in workers:
        info = path.stat()
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (10001, 0o700), (path, info)
        assert list(path.iterdir()) == []


# --- the runner's side, on real containers -----------------------------------------------------

SILENT = 'import time\ntime.sleep(600)\n'
WRONG_TOKEN = r'''
import json, os, socket, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(os.environ["RUNNER_CHANNEL_SOCKET"])
s.sendall(json.dumps({"type": "hello", "token": "0" * 32}).encode() + b"\n")
time.sleep(600)
'''


@pytest.fixture(scope="module")
def fake_runner_images(docker_available, tmp_path_factory) -> Iterator[dict[str, str]]:
    """Runner images whose entry point never connects, or connects with a wrong token."""
    client = docker.from_env()
    runner = images.ensure_runner_image(client, "python")
    tags = {}
    try:
        for name, script in (("silent", SILENT), ("wrong-token", WRONG_TOKEN)):
            context = tmp_path_factory.mktemp(name)
            (context / "entry.py").write_text(script)
            (context / "Dockerfile").write_text(
                f"FROM {runner}\nCOPY entry.py /opt/entry.py\nENTRYPOINT [\"python3\", \"/opt/entry.py\"]\n")
            tag = f"engine-test-{name}:{uuid.uuid4().hex[:8]}"
            client.images.build(path=str(context), tag=tag, rm=True, forcerm=True, network_mode="none",
                                labels={images.MANAGED_LABEL: "true"})
            tags[name] = tag
        yield tags
    finally:
        for tag in tags.values():
            client.images.remove(tag, force=True)
        client.close()


@pytest.fixture
async def docker_instance(docker_backend, docker_available) -> AsyncIterator[DockerBackend]:
    runtime = "runsc" if docker_backend == "docker-runsc" else "runc"
    instance = DockerBackend(runtime, f"test-{uuid.uuid4().hex[:8]}")
    await instance.start()
    try:
        yield instance
    finally:
        await instance.close()


def _init() -> protocol.Init:
    return protocol.Init(service="svc-test", project_root="/srv/project", functions=[], assets=[], env={},
                         limits=protocol.Limits(max_log_bytes=65536, max_response_bytes=1 << 20,
                                                 max_frame_bytes=1 << 20))


async def _bootstrap(backend: DockerBackend, image: str, timeout_s: float) -> tuple[BootstrapError, float]:
    spec = WorkerSpec(engine_id=backend.engine_id, service="svc-test", build_id="b1", runtime="python",
                      project_root=Path("/nonexistent"), limits=WorkerLimits(), image=image)
    channel = await backend.spawn(spec, max_frame_bytes=1 << 20)
    worker = Worker(channel, "svc-test", on_dead=lambda _: None)
    started = time.monotonic()
    try:
        with pytest.raises(BootstrapError) as caught:
            await worker.bootstrap(_init(), timeout_s)
        return caught.value, time.monotonic() - started
    finally:
        await worker.kill("test")
        await channel.wait_removed()


async def test_a_runner_that_never_connects_fails_at_the_bootstrap_deadline_naming_the_socket(docker_instance, fake_runner_images):
    error, took = await _bootstrap(docker_instance, fake_runner_images["silent"], 3.0)
    assert "bootstrap_timeout_s=3s" in str(error) and "never connected to its channel socket" in str(error), error
    assert took < 3.0 + 10
    assert not list(docker_instance.channels.engine_dir.glob("*/")), "the worker's channel directory was not removed"


async def test_a_connection_without_the_workers_token_is_refused(docker_instance, fake_runner_images):
    error, _ = await _bootstrap(docker_instance, fake_runner_images["wrong-token"], 30.0)
    assert "was not the runner's hello with its token" in str(error), error


# --- directories left behind --------------------------------------------------------------------


def test_a_killed_engines_channel_directories_are_reaped_at_the_next_start(engine_factory, docker_backend):
    first = engine_factory(f"attacks={ATTACKS}", backend=docker_backend, config=CONFIG)
    left = channels_root() / engine_id_of(first)
    wait_for(lambda: any(p.is_dir() for p in left.iterdir()), 30, "a worker's channel directory")
    first.stop(signal.SIGKILL)
    assert left.is_dir(), "a killed engine cannot remove its directories: the next one must"
    second = engine_factory(f"attacks={ATTACKS}", backend=docker_backend, config=CONFIG)
    engine_id_of(second)
    assert not left.exists(), f"{left} survived the next engine's start"
    assert _get(second, "/ok").status_code == 200


# --- dockerd away, with live-restore -------------------------------------------------------------


@pytest.fixture(scope="module")
def live_restore_daemon(docker_available):
    """A private dockerd with live-restore, as scripts/ensure-docker configures one (never the shared daemon)."""
    yield from second_daemon_with_images(live_restore=True)


CLIENTS = 4


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_warm_workers_serve_through_a_dockerd_restart_and_new_ones_start_once_it_is_back(
    live_restore_daemon, engine_factory, docker_backend, stop_signal
):
    daemon = live_restore_daemon
    running = engine_factory(f"attacks={ATTACKS}", backend=docker_backend,
                             config={"min_idle": 2, "max_workers": 2}, env={"DOCKER_HOST": daemon.host})
    statuses: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=running.url, timeout=30) as client:
            while not stop.is_set():
                try:
                    reply = client.get("/ok")
                    statuses.append((time.monotonic(), reply.status_code, reply.text[:200]))
                except httpx.HTTPError as exc:
                    statuses.append((time.monotonic(), 0, repr(exc)))
                time.sleep(0.01)

    threads = [threading.Thread(target=load) for _ in range(CLIENTS)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(2)
        gone_at = time.monotonic()
        daemon.stop(stop_signal)
        # Every pool has live workers: the engine stays ready (they serve without the daemon).
        readiness = httpx.get(running.admin_url + "/readyz", timeout=10)
        assert readiness.status_code == 200 and "unreachable" in readiness.text, readiness.text
        time.sleep(3)
        assert not daemon.running
        back_at = time.monotonic()
        daemon.start()
        wait_for(lambda: httpx.get(running.admin_url + "/readyz", timeout=5).status_code == 200, 60,
                 "/readyz to answer 200 once the daemon is back")
        time.sleep(2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    failed = [s for s in statuses if s[1] != 200]
    during = [s for s in statuses if gone_at <= s[0] <= back_at]
    assert not failed, failed[:5]
    assert len(during) >= 10, f"only {len(during)} requests while the daemon was away"

    # A worker that dies now is replaced by a new container on the daemon that came back.
    ready_before = sum(r.get("event") == "worker_ready" for r in log_records(running))
    assert _get(running, "/exit").status_code == 502
    wait_for(lambda: sum(r.get("event") == "worker_ready" for r in log_records(running)) > ready_before, 60,
             "a new worker once the daemon is back")
    assert _get(running, "/ok").status_code == 200
    running.stop()
