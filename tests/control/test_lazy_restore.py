"""An engine restarted on a store with many deployed environments serves before their images are built.

Real engines (docker, runc), the real control API, real `docker build` and npm installs on the
shared daemon. Eight environments are deployed, each with its own content (so every image is new to
the daemon), half with an npm dependency (their builds take seconds); the engine is stopped and
their images removed, so the restarted engine must really build them all again. It restores every
environment at once: `/readyz` turns 200 once what the warm budget holds (one worker here) is built
and warm, not after eight builds; a request to an environment whose image is not built yet moves
its build to the front and waits for it (a cold start); one whose build fails on restore answers
503 naming it and the step, says so in its Logs, and holds up nobody.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from bench import steady
from engine.backends.docker_reaper import SERVICE_LABEL
from tests.conftest import EngineLauncher, RunningEngine, free_port
from tests.control.conftest import make_service, ok, start_control_engine, upload, wait_build
from tests.docker_helpers import log_records, remove_images, wait_for  # noqa: F401 (a fixture)

PLAIN_JS = """exports.handler = (context, event, callback) => callback(null, { version: '%s' });
"""
# An npm install from the registry: the build takes seconds.
DEPENDENT_JS = """const isNumber = require('is-number');
exports.handler = (context, event, callback) => callback(null, { version: '%s', number: isNumber(5) });
"""
IS_NUMBER = '[{"name":"is-number","version":"7.0.0"}]'
ENVIRONMENTS = 8
BROKEN = 3  # its build is made unbuildable while the engine is stopped (the version is gone)



def _built(engine: RunningEngine) -> float:
    """Service images this engine built (not found present), by its own counter."""
    return steady.metric_total(steady.scrape(engine.admin_url), "functions_engine_image_builds_total",
                               kind="service", outcome="built")


def _get(engine: RunningEngine, host: str, timeout: float = 200) -> httpx.Response:
    return httpx.get(f"{engine.url}/version", headers={"Host": f"{host}:{engine.port}"}, timeout=timeout)


def _deploy(c: httpx.Client, name: str, version: str, dependent: bool) -> dict[str, Any]:
    """A service `name` with a `production` environment (host `<name>.localhost`) serving a new build."""
    service = make_service(c, name)["sid"]
    env = ok(c.post(f"/Services/{service}/Environments", data={"UniqueName": "production"}), 201)
    source = (DEPENDENT_JS if dependent else PLAIN_JS) % version
    fn = upload(c, service, "function", "/version", source.encode(), "version.js")
    build = ok(c.post(f"/Services/{service}/Builds", data={
        "FunctionVersions": fn["sid"], "Runtime": "node22", "Dependencies": IS_NUMBER if dependent else '"[]"'}), 201)
    done = wait_build(c, service, build["sid"])
    assert done["status"] == "completed", done
    ok(c.post(f"/Services/{service}/Environments/{env['sid']}/Deployments", data={"BuildSid": build["sid"]}), 201)
    return {"service": service, "environment": env["sid"], "host": env["domain_name"], "build": build["sid"],
            "name": name, "label": f"{name}-production", "version": version}


@pytest.mark.docker
def test_an_engine_restarted_on_many_environments_is_ready_and_serves_before_their_images_are_built(
    engine_factory: EngineLauncher, tmp_path: Path, control_docker_backend: str, docker_available: None,
    remove_images: list[str],
) -> None:
    nonce = uuid.uuid4().hex[:6]
    data = tmp_path / "data"
    first = start_control_engine(engine_factory, data, backend=control_docker_backend)
    account = first.account("team-a")
    with account.client() as c:
        envs = []
        for i in range(ENVIRONMENTS):
            remove_images += [f"lr{nonce}{i}", f"lr{nonce}{i}-production"]  # built by the API, then by the restore
            envs.append(_deploy(c, f"lr{nonce}{i}", f"{nonce}-{i}", dependent=i % 2 == 1))
    assert first.engine.stop() == 0
    # The images are gone (a new node, a pruned daemon) and the broken build's dependency no longer
    # resolves: the restarted engine must build all eight again, and one of them fails.
    remove_images_now(envs)
    broken = envs[BROKEN]
    package = data / "builds" / broken["build"] / "package.json"
    manifest = json.loads(package.read_text())
    manifest["dependencies"]["is-number"] = "999.0.0"
    package.write_text(json.dumps(manifest))

    api_port = free_port()
    started = time.monotonic()
    engine = engine_factory(backend=control_docker_backend, ready_timeout=300, args=[
        "--api-port", str(api_port), "--data-dir", str(data)],
        config={"warm_budget_workers": 1, "max_workers": 1, "max_parallel_image_builds": 1})
    ready_s = time.monotonic() - started
    built_at_ready = _built(engine)
    print(f"restarted on {ENVIRONMENTS} environments: ready after {ready_s:.1f} s with {built_at_ready:g} images built")
    assert built_at_ready < ENVIRONMENTS - 1, f"{built_at_ready} images built before readiness"

    last = envs[-1]  # cold, and its build (an npm install) is queued behind six others
    reply = _get(engine, last["host"])
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"version": last["version"], "number": True}
    assert _built(engine) < ENVIRONMENTS - 1, "the requested environment should be served while builds are queued"
    ready = [r for r in log_records(engine) if r.get("event") == "image_ready"]
    order = [r["pool"].split("/")[0] for r in ready]
    assert any(r["pool"] == f"{last['label']}/node" and r["demanded"] for r in ready), ready
    assert order.index(last["label"]) < ENVIRONMENTS - 2, f"the waited-for build should jump the queue: {order}"
    assert steady.metric_total(steady.scrape(engine.admin_url), "functions_engine_cold_starts_total",
                               service=last["label"]) == 1

    for env in envs:
        reply = _get(engine, env["host"])
        if env is broken:
            assert reply.status_code == 503, reply.text
            assert f"service {broken['label']}" in reply.text and "building its node image failed" in reply.text, reply.text
            assert "is-number" in reply.text and "image could not be built" in reply.text, reply.text
        else:
            assert reply.status_code == 200, (env["label"], reply.text)
            assert reply.json()["version"] == env["version"]
    assert _built(engine) == ENVIRONMENTS - 1  # every image but the broken one, each built once
    print(f"every environment answered {time.monotonic() - started:.1f} s after the restart")
    readyz = httpx.get(engine.admin_url + "/readyz", timeout=10)
    assert readyz.status_code == 200, readyz.text

    # Reported like a refused deployment: in the environment's Logs, and counted.
    with httpx.Client(base_url=f"http://127.0.0.1:{api_port}/v1", auth=account.auth, timeout=60) as c:
        logs_url = f"/Services/{broken['service']}/Environments/{broken['environment']}/Logs"

        def refusal() -> list[dict[str, Any]]:
            return [line for line in ok(c.get(logs_url, params={"PageSize": "50"}))["logs"]
                    if line["level"] == "ERROR" and f"build {broken['build']} is not served" in line["message"]]

        lines = wait_for(refusal, 30, "the failed build in the environment's Logs")
        assert "is-number" in lines[0]["message"], lines
        others = ok(c.get(f"/Services/{envs[0]['service']}/Environments/{envs[0]['environment']}/Logs",
                          params={"PageSize": "50"}))["logs"]
        assert not [line for line in others if line["level"] == "ERROR"], others
    samples = steady.scrape(engine.admin_url)
    assert steady.metric_total(samples, "functions_engine_deployments_total", outcome="refused") == 1
    assert steady.metric_total(samples, "functions_engine_deployments_total", outcome="applied") == ENVIRONMENTS


def remove_images_now(envs: list[dict[str, Any]]) -> None:
    """Every image of these environments: those the API's builds made (labelled with the service's
    unique name) and those a restore made (labelled `<service>-<environment>`)."""
    client = docker.from_env()
    try:
        for env in envs:
            for label in (env["name"], env["label"]):
                for image in client.images.list(filters={"label": f"{SERVICE_LABEL}={label}"}):
                    client.images.remove(image.id, force=True)
    finally:
        client.close()


def test_a_restored_environment_whose_build_fails_answers_503_naming_it_and_blocks_no_one(
    engine_factory: EngineLauncher, tmp_path: Path, backend: str, remove_images: list[str],
) -> None:
    """Three environments, the first (restored first, warmed at start) made unbuildable while the
    engine is stopped: the restarted engine is ready, answers it with 503 naming it and the failing
    step, writes why in its Logs as for a refused deployment, and serves the two others."""
    nonce = uuid.uuid4().hex[:6]
    data = tmp_path / "data"
    first = start_control_engine(engine_factory, data, backend=backend)
    account = first.account("team-a")
    with account.client() as c:
        if backend.startswith("docker"):
            remove_images += [name for i in range(3) for name in (f"fail{nonce}{i}", f"fail{nonce}{i}-production")]
        envs = [_deploy(c, f"fail{nonce}{i}", f"{nonce}-{i}", dependent=i == 0) for i in range(3)]
    assert first.engine.stop() == 0
    if backend.startswith("docker"):
        remove_images_now(envs)
    broken = envs[0]
    package = data / "builds" / broken["build"] / "package.json"
    manifest = json.loads(package.read_text())
    manifest["dependencies"]["is-number"] = "999.0.0"
    package.write_text(json.dumps(manifest))
    api_port = free_port()
    engine = engine_factory(backend=backend, ready_timeout=300, args=[
        "--api-port", str(api_port), "--data-dir", str(data)], config={"warm_budget_workers": 1})
    reply = _get(engine, broken["host"])
    assert reply.status_code == 503, reply.text
    assert f"service {broken['label']}" in reply.text and "building its node image failed" in reply.text, reply.text
    assert "is-number" in reply.text, reply.text
    for env in envs[1:]:
        reply = _get(engine, env["host"])
        assert reply.status_code == 200 and reply.json()["version"] == env["version"], reply.text
    assert httpx.get(engine.admin_url + "/readyz", timeout=10).status_code == 200
    with httpx.Client(base_url=f"http://127.0.0.1:{api_port}/v1", auth=account.auth, timeout=60) as c:
        logs_url = f"/Services/{broken['service']}/Environments/{broken['environment']}/Logs"
        lines = wait_for(lambda: [line for line in ok(c.get(logs_url))["logs"] if line["level"] == "ERROR"
                                  and f"build {broken['build']} is not served" in line["message"]],
                         30, "the failed build in the environment's Logs")
        assert "is-number" in lines[0]["message"], lines
