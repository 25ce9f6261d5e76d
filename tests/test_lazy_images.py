"""Start-up with many services: the ports open before the images are built (engine/image_queue.py).

Real engine, real HTTP, real `docker build` on the shared daemon (runc). Each test writes its
services with a fresh nonce in their files, so every image is really built in the test (and is
removed at its end). `/readyz` waits only for the pools warmed at start (here the warm budget holds
one or two), never for every service's image; a request to a service whose image is not built yet
waits for that build (moved to the front of the queue), and a service whose build fails answers
503 naming itself and the failing step without holding up anyone.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import docker
import httpx
import pytest

from bench import steady
from tests.conftest import PROJECTS
from tests.docker_helpers import log_records, remove_images, wait_for  # noqa: F401 (a fixture)

GOOD = PROJECTS / "tenant-good"
SLOW_REQUIREMENT = "six==1.16.0\n"  # a real pip install from the local index: the build takes seconds
BAD_REQUIREMENT = "six==999.0.0\n"  # no such version: pip fails, and so does the build


def _service(root: Path, nonce: str, requirements: str | None = None) -> Path:
    """tenant-good's functions, plus a file with `nonce` and the service's own name, so each image
    is new to the daemon (images of the same content are tagged, not built again)."""
    shutil.copytree(GOOD, root)
    (root / "assets").mkdir()
    (root / "assets" / "nonce.txt").write_text(f"{nonce} {root.name}")
    if requirements is not None:
        (root / "requirements.txt").write_text(requirements)
    return root


def _get(engine, service: str, path: str = "/ok", timeout: float = 200) -> httpx.Response:
    with engine.client(timeout=timeout) as client:
        return client.get(path, headers={"Host": f"{service}.localhost:{engine.port}"})


def _built(engine) -> float:
    """Service images this engine built (not found present), by its own counter."""
    return steady.metric_total(steady.scrape(engine.admin_url), "functions_engine_image_builds_total",
                               kind="service", outcome="built")



def test_many_services_are_ready_and_served_before_every_image_is_built(
        engine_factory, docker_available, tmp_path, remove_images):
    """12 new services, half with a requirements.txt to install, 2 builds at a time, a budget of one
    warm worker: /readyz turns 200 once the first service is built and warm, not after 12 builds;
    the first service answers while builds are still queued; a request to the last service waits for
    its build, which jumps the queue, and is answered 200 as a cold start; then every service answers."""
    nonce = uuid.uuid4().hex[:6]
    names = [f"lz{nonce}-{i:02d}" for i in range(12)]
    remove_images.extend(names)
    projects = [f"{name}={_service(tmp_path / name, nonce, SLOW_REQUIREMENT if i % 2 else None)}"
                for i, name in enumerate(names)]
    engine = engine_factory(*projects, backend="docker", args=["--domain", "localhost"], ready_timeout=300,
                            config={"warm_budget_workers": 1, "max_workers": 1, "max_parallel_image_builds": 2})
    built_at_ready = _built(engine)
    assert built_at_ready < len(names), f"{built_at_ready} images built before readiness"
    assert _get(engine, names[0]).status_code == 200
    assert _built(engine) < len(names), "the first service should be served while builds are still queued"
    last = names[-1]
    reply = _get(engine, last)
    assert reply.status_code == 200, reply.text
    assert steady.metric_total(steady.scrape(engine.admin_url), "functions_engine_cold_starts_total", service=last) == 1
    ready = [r for r in log_records(engine) if r.get("event") == "image_ready"]
    order = [r["pool"].split("/")[0] for r in ready]
    assert any(r["pool"] == f"{last}/python" and r["demanded"] for r in ready), ready
    assert order.index(last) < len(names) - 1, f"the waited-for build should jump the queue: {order}"
    for name in names:
        reply = _get(engine, name)
        assert reply.status_code == 200, (name, reply.text)
    assert _built(engine) == len(names)


def test_a_service_whose_image_cannot_be_built_answers_503_naming_it_and_blocks_no_one(
        engine_factory, docker_available, tmp_path, remove_images):
    """`broken` comes first and is warmed at start; its pip install fails. The engine is ready, lists
    it as failing, answers its requests at once with a 503 naming the service, requirements.txt and
    pip's error, and serves the services built after it, one build at a time."""
    nonce = uuid.uuid4().hex[:6]
    broken, good = f"broken{nonce}", [f"ok{nonce}-{i}" for i in range(3)]
    remove_images.extend([broken, *good])
    projects = [f"{broken}={_service(tmp_path / broken, nonce, BAD_REQUIREMENT)}"]
    projects += [f"{name}={_service(tmp_path / name, nonce)}" for name in good]
    engine = engine_factory(*projects, backend="docker", args=["--domain", "localhost"], ready_timeout=300,
                            config={"warm_budget_workers": 2, "max_workers": 1, "max_parallel_image_builds": 1})
    readyz = httpx.get(engine.admin_url + "/readyz", timeout=10)
    assert readyz.status_code == 200 and f"{broken}/python" in readyz.text, readyz.text
    for _ in range(3):
        started = time.monotonic()
        reply = _get(engine, broken)
        assert reply.status_code == 503, reply.text
        assert time.monotonic() - started < 5, "a failed build is answered at once"
        assert f"service {broken}" in reply.text and "requirements.txt" in reply.text, reply.text
        assert "six==999.0.0" in reply.text and "image could not be built" in reply.text, reply.text
        assert int(reply.headers["Retry-After"]) >= 1
    for name in good:
        reply = _get(engine, name)
        assert reply.status_code == 200, (name, reply.text)
    samples = steady.scrape(engine.admin_url)
    assert steady.metric_total(samples, "functions_engine_pool_healthy", service=broken) == 0
    assert steady.metric_total(samples, "functions_engine_pool_healthy", service=good[0]) == 1
    failed = [r for r in log_records(engine) if r.get("event") == "image_build_failed"]
    assert [r["pool"] for r in failed] == [f"{broken}/python"], failed


def test_a_request_cannot_wait_for_a_build_past_build_wait_timeout_s(
        engine_factory, docker_available, tmp_path, remove_images):
    """build_wait_timeout_s = 0.5: a request to a service still installing its requirements is a 503
    naming the setting within seconds, not a request held for the whole build; the build goes on,
    and a later request is answered 200."""
    nonce = uuid.uuid4().hex[:6]
    warm, slow = f"warm{nonce}", f"slow{nonce}"
    remove_images.extend([warm, slow])
    engine = engine_factory(
        f"{warm}={_service(tmp_path / warm, nonce)}", f"{slow}={_service(tmp_path / slow, nonce, SLOW_REQUIREMENT)}",
        backend="docker", args=["--domain", "localhost"], ready_timeout=300,
        config={"warm_budget_workers": 1, "max_parallel_image_builds": 1, "build_wait_timeout_s": 0.5})
    started = time.monotonic()
    reply = _get(engine, slow)
    took = time.monotonic() - started
    if reply.status_code == 200:
        pytest.fail(f"the build of {slow} finished within 0.5 s of readiness: the test proves nothing")
    assert reply.status_code == 503, reply.text
    assert took < 10, f"the request was held {took:.1f} s"
    assert "build_wait_timeout_s=0.5" in reply.text and f"service {slow}" in reply.text, reply.text
    assert int(reply.headers["Retry-After"]) >= 1
    wait_for(lambda: _get(engine, slow).status_code == 200, 200, f"{slow} served once its build is done")
