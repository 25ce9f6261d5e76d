"""The account's worker quota (`max_workers_per_account`): however its requests are spread over
environments, one account never has more containers than its quota; its excess requests wait or
get a 503 naming the quota, and another account is not slowed by it."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import httpx
import pytest

from tests.conftest import EngineLauncher
from tests.control.conftest import Account, ControlEngine, make_service, ok, start_control_engine, upload, wait_build
from tests.docker_helpers import engine_id_of

SERVICE_LABEL = "io.functions-engine.service"
ENGINE_LABEL = "io.functions-engine.engine"
SLEEP_JS = "exports.handler = (context, event, callback) => setTimeout(() => callback(null, 'slept'), 3000);\n"
FAST_JS = "exports.handler = (context, event, callback) => callback(null, 'fast');\n"


def _deploy(control: ControlEngine, account: Account, service_name: str, code: str, environments: list[str]) -> list[str]:
    """One build of `/f` deployed to each environment; returns their hosts."""
    with account.client() as c:
        service = make_service(c, service_name)["sid"]
        fn = upload(c, service, "function", "/f", code.encode(), "f.js")
        build = ok(c.post(f"/Services/{service}/Builds", data={
            "FunctionVersions": fn["sid"], "Runtime": "node22", "Dependencies": '"[]"'}), 201)
        assert wait_build(c, service, build["sid"])["status"] == "completed"
        hosts = []
        for name in environments:
            env = ok(c.post(f"/Services/{service}/Environments", data={"UniqueName": name, "DomainSuffix": name}), 201)
            ok(c.post(f"/Services/{service}/Environments/{env['sid']}/Deployments", data={"BuildSid": build["sid"]}), 201)
            hosts.append(env["domain_name"])
    return hosts


@pytest.mark.docker
def test_requests_spread_over_two_environments_cannot_run_more_workers_than_the_account_quota(
    engine_factory: EngineLauncher, tmp_path: Path, control_docker_backend: str, docker_available: None,
) -> None:
    control = start_control_engine(engine_factory, tmp_path / "data", backend=control_docker_backend,
                                   config={"max_workers": 4, "min_idle": 1})
    greedy = control.account("greedy", "--max-workers", "2")
    other = control.account("other")
    greedy_hosts = _deploy(control, greedy, "slow", SLEEP_JS, ["one", "two"])
    (other_host,) = _deploy(control, other, "calm", FAST_JS, ["prod"])
    labels = {"slow-one", "slow-two"}
    mine = f"{ENGINE_LABEL}={engine_id_of(control.engine)}"  # this engine's containers, not a concurrent run's

    client = docker.from_env()
    most = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal most
        while not stop.is_set():
            # The low-level list: one call, no per-container inspect racing a removal.
            running = [c for c in client.api.containers(all=True, filters={"label": mine})
                       if (c.get("Labels") or {}).get(SERVICE_LABEL) in labels]
            most = max(most, len(running))
            time.sleep(0.05)

    def call(host: str) -> httpx.Response:
        return httpx.get(f"{control.engine.url}/f", headers={"Host": f"{host}:{control.engine.port}"}, timeout=60)

    counter = threading.Thread(target=count)
    counter.start()
    try:
        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=6) as pool:
            futures = [pool.submit(call, greedy_hosts[i % 2]) for i in range(6)]
            time.sleep(1.0)  # the greedy account's requests are all in flight now
            calm_began = time.monotonic()
            calm = call(other_host)
            calm_s = time.monotonic() - calm_began
            results = [f.result() for f in futures]
        elapsed = time.monotonic() - began
    finally:
        stop.set()
        counter.join()
        client.close()

    assert calm.status_code == 200 and calm.text == "fast", calm.text
    assert calm_s < 5, f"the other account's request took {calm_s:.1f} s while the quota held the first"
    assert most <= 2, f"the account with max_workers=2 had {most} containers at once"
    served = [r for r in results if r.status_code == 200]
    refused = [r for r in results if r.status_code != 200]
    for r in served:
        assert r.text == "slept"
    for r in refused:
        assert r.status_code == 503 and "max_workers_per_account=2" in r.text, (r.status_code, r.text)
    # Two at a time, 3 s each: six served take three rounds; fewer served means the quota refused some.
    assert refused or elapsed >= 8.5, (len(served), elapsed)
    assert served, "the quota must still serve the account's requests, two at a time"


VERSION_JS = "exports.handler = (context, event, callback) => callback(null, '%s');\n"


@pytest.mark.docker
def test_a_redeploy_at_the_account_quota_takes_the_old_builds_idle_place_and_never_exceeds_it(
    engine_factory: EngineLauncher, tmp_path: Path, control_docker_backend: str, docker_available: None,
) -> None:
    control = start_control_engine(engine_factory, tmp_path / "data", backend=control_docker_backend, config={"min_idle": 1})
    account = control.account("tight", "--max-workers", "1")
    mine = f"{ENGINE_LABEL}={engine_id_of(control.engine)}"  # this engine's containers, not a concurrent run's
    client = docker.from_env()
    most = 0
    stop = threading.Event()

    def count() -> None:
        nonlocal most
        while not stop.is_set():
            running = [c for c in client.api.containers(all=True, filters={"label": mine})
                       if (c.get("Labels") or {}).get(SERVICE_LABEL) == "shop-dev"]
            most = max(most, len(running))
            time.sleep(0.05)

    counter = threading.Thread(target=count)
    counter.start()
    try:
        with account.client() as c:
            service = make_service(c, "shop")["sid"]
            env = ok(c.post(f"/Services/{service}/Environments", data={"UniqueName": "dev", "DomainSuffix": "dev"}), 201)
            builds = []
            for version in ("v1", "v2"):
                fn = upload(c, service, "function", "/f", (VERSION_JS % version).encode(), f"{version}.js")
                build = ok(c.post(f"/Services/{service}/Builds", data={
                    "FunctionVersions": fn["sid"], "Runtime": "node22", "Dependencies": '"[]"'}), 201)
                assert wait_build(c, service, build["sid"])["status"] == "completed"
                builds.append(build["sid"])
            deployments = f"/Services/{service}/Environments/{env['sid']}/Deployments"
            for version, build_sid in zip(("v1", "v2"), builds):
                ok(c.post(deployments, data={"BuildSid": build_sid}), 201)
                got = httpx.get(f"{control.engine.url}/f", headers={"Host": f"shop-dev.localhost:{control.engine.port}"},
                                timeout=30)
                assert got.status_code == 200 and got.text == version, got.text
    finally:
        stop.set()
        counter.join()
        client.close()
    assert most <= 1, f"the account with max_workers=1 had {most} containers at once"
