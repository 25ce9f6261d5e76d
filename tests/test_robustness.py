"""Conformance: the engine under load, under worker death, and at shutdown (DESIGN non-negotiables).

200 concurrent requests to a 200 ms handler all succeed; a worker killed mid-request is a 502 and
the pool heals; once the engine has stopped, none of the processes it started (workers, and what
they started) is left.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
PROJECTS = Path(__file__).resolve().parent / "projects"
ROBUSTNESS = PROJECTS / "robustness"
MAX_WORKERS = 32


def _require_docker(backend, request):
    if backend != "process":
        request.getfixturevalue("docker_available")


@pytest.fixture(scope="module")
def engine(module_engine_factory, backend, request):
    _require_docker(backend, request)
    config = {"min_idle": 4, "max_workers": MAX_WORKERS, "max_queue": 256, "acquire_timeout_s": 60}
    return module_engine_factory(ROBUSTNESS, backend=backend, config=config)


# --- /proc helpers ---------------------------------------------------------------------------


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """Running or sleeping; a zombie (exited, not yet reaped) counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for pid in all_pids():
        try:
            with open(f"/proc/{pid}/stat") as f:
                parents[pid] = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            pass
    found: set[int] = set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def leftovers(candidates: set[int], needles: list[str]) -> list[str]:
    me = os.getpid()
    left = [f"{pid}: {cmdline(pid)}" for pid in candidates if alive(pid)]
    for pid in all_pids():
        if pid != me and alive(pid) and any(needle in cmdline(pid) for needle in needles):
            left.append(f"{pid}: {cmdline(pid)}")
    return sorted(set(left))


# --- load ------------------------------------------------------------------------------------


async def test_200_concurrent_requests_to_a_200_ms_handler_all_succeed(engine):
    limits = httpx.Limits(max_connections=250, max_keepalive_connections=250)
    async with httpx.AsyncClient(base_url=engine.url, timeout=120, limits=limits) as client:
        responses = await asyncio.gather(*(client.get("/sleep", params={"s": "0.2", "i": str(i)}) for i in range(200)))
    assert [r.status_code for r in responses] == [200] * 200
    assert [r.json()["i"] for r in responses] == [str(i) for i in range(200)]
    workers = {r.json()["worker"] for r in responses}
    assert 1 < len(workers) <= MAX_WORKERS, f"{len(workers)} workers served 200 requests"


# --- worker death ----------------------------------------------------------------------------


def test_worker_killed_mid_request_is_502_and_the_pool_heals(engine):
    with engine.client() as client:
        response = client.get("/die")
        assert response.status_code == 502
        assert response.headers["content-type"].split(";")[0] == "text/plain"
        assert response.text
        for _ in range(10):
            assert client.get("/sleep", params={"s": "0"}).status_code == 200


async def test_a_dying_worker_does_not_disturb_requests_on_other_workers(engine):
    async with httpx.AsyncClient(base_url=engine.url, timeout=60) as client:
        calls = [client.get("/sleep", params={"s": "0.5", "i": str(i)}) for i in range(8)]
        calls.append(client.get("/die", params={"s": "0.1"}))
        responses = await asyncio.gather(*calls)
    assert [r.status_code for r in responses[:-1]] == [200] * 8
    assert responses[-1].status_code == 502


# --- shutdown --------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_no_process_the_engine_started_outlives_it(engine_factory, backend, tmp_path, request, sig):
    _require_docker(backend, request)
    project = tmp_path / "robustness"  # tmp_path is unique already; a fixed name reuses one service image
    shutil.copytree(ROBUSTNESS, project)
    marker = f"grandchild-marker-{uuid.uuid4().hex}"
    running = engine_factory(project, backend=backend, config={"min_idle": 2, "max_workers": 4})
    with running.client() as client:
        for i in range(4):
            assert client.get("/sleep", params={"s": "0", "i": str(i)}).status_code == 200
        spawned = client.get("/spawn", params={"marker": marker})
    assert spawned.status_code == 200
    worker_host = spawned.json()["worker"].rsplit(":", 1)[0]

    assert spawned.json()["child_pid"] > 0  # the grandchild started (it may already be reaped with a recycled worker)
    candidates = descendants(running.proc.pid)
    if backend == "process":
        assert candidates, "the process backend's workers are children of the engine"

    assert running.stop(sig) is not None
    needles = [marker, str(project)]
    deadline = time.monotonic() + 15
    while leftovers(candidates, needles) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftovers(candidates, needles) == []

    if backend.startswith("docker"):
        # Containers get the container id as host name unless the backend sets another one.
        listed = subprocess.run(["docker", "ps", "-aq", "--no-trunc"], capture_output=True, text=True, timeout=30).stdout
        assert not any(cid.startswith(worker_host) for cid in listed.split()), "a worker container outlived the engine"
