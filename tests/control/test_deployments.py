"""Deployments through the API on real containers: deploy, variables without a build, rollback,
delete, and a restart on the same store — the converger driving `Engine.apply`/`withdraw`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import EngineLauncher, free_port
from tests.control.conftest import ControlEngine, error, make_service, ok, start_control_engine, upload, wait_build


VERSION_JS = """exports.handler = (context, event, callback) =>
  callback(null, { version: '%s', greeting: context.GREETING || null });
"""


def _call(engine: ControlEngine, host: str, path: str = "/version") -> httpx.Response:
    return httpx.get(f"{engine.engine.url}{path}", headers={"Host": f"{host}:{engine.engine.port}"}, timeout=30)


def _build(c: httpx.Client, service: str, version: str) -> str:
    fn = upload(c, service, "function", "/version", (VERSION_JS % version).encode(), "version.js")
    asset = upload(c, service, "asset", "/build.txt", version.encode(), "build.txt", content_type="text/plain")
    build = ok(c.post(f"/Services/{service}/Builds", data={
        "FunctionVersions": fn["sid"], "AssetVersions": asset["sid"], "Runtime": "node22", "Dependencies": '"[]"',
    }), 201)
    done = wait_build(c, service, build["sid"])
    assert done["status"] == "completed", done
    return build["sid"]


def _eventually(check: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.docker
def test_deploy_variables_rollback_and_delete_through_the_api(
    engine_factory: EngineLauncher, tmp_path: Path, control_docker_backend: str, docker_available: None,
) -> None:
    control = start_control_engine(engine_factory, tmp_path / "data", backend=control_docker_backend)
    account = control.account("team-a")
    with account.client() as c:
        service = make_service(c, "shop")["sid"]
        env = ok(c.post(f"/Services/{service}/Environments", data={"UniqueName": "dev-environment", "DomainSuffix": "dev"}), 201)
        host = env["domain_name"]
        assert host == "shop-dev.localhost"
        assert _call(control, host).status_code == 404  # nothing deployed yet
        v1, v2 = _build(c, service, "v1"), _build(c, service, "v2")

        deployments = f"/Services/{service}/Environments/{env['sid']}/Deployments"
        first = ok(c.post(deployments, data={"BuildSid": v1}), 201)
        assert first["sid"].startswith("ZD") and first["build_sid"] == v1
        assert _call(control, host).json() == {"version": "v1", "greeting": None}
        assert _call(control, host, "/build.txt").text == "v1"

        variables = f"/Services/{service}/Environments/{env['sid']}/Variables"
        var = ok(c.post(variables, data={"Key": "GREETING", "Value": "hello"}), 201)

        def greets(expected: Any) -> None:
            assert _call(control, host).json() == {"version": "v1", "greeting": expected}

        _eventually(lambda: greets("hello"))
        ok(c.post(f"{variables}/{var['sid']}", data={"Value": "hi"}))
        _eventually(lambda: greets("hi"))
        assert c.delete(f"{variables}/{var['sid']}").status_code == 204
        _eventually(lambda: greets(None))

        ok(c.post(deployments, data={"BuildSid": v2}), 201)
        assert _call(control, host).json()["version"] == "v2"
        ok(c.post(deployments, data={"BuildSid": v1}), 201)  # rollback: a deployment of an older build
        assert _call(control, host).json()["version"] == "v1"
        assert [d["build_sid"] for d in ok(c.get(deployments))["deployments"]] == [v1, v2, v1]
        assert ok(c.get(f"/Services/{service}/Environments/{env['sid']}"))["build_sid"] == v1
        error(c.delete(f"/Services/{service}/Builds/{v1}"), 409, "serves")
        logs = ok(c.get(f"/Services/{service}/Environments/{env['sid']}/Logs"))["logs"]
        assert [line["message"] for line in logs][-1] == f"now serving build {v1}"

        assert c.delete(f"/Services/{service}/Environments/{env['sid']}").status_code == 204
        assert _call(control, host).status_code == 404
    scraped = httpx.get(control.engine.admin_url + "/metrics").text
    # 3 deployments and 3 variable roll-outs (create, update, delete)
    assert 'functions_engine_deployments_total{outcome="applied"} 6.0' in scraped
    assert 'functions_engine_builds_total{status="completed"} 2.0' in scraped


@pytest.mark.docker
def test_an_engine_restarted_on_the_same_store_serves_its_deployments_again(
    engine_factory: EngineLauncher, tmp_path: Path, control_docker_backend: str, docker_available: None,
) -> None:
    first = start_control_engine(engine_factory, tmp_path / "data", backend=control_docker_backend)
    account = first.account("team-a")
    with account.client() as c:
        service = make_service(c, "shop")["sid"]
        env = ok(c.post(f"/Services/{service}/Environments", data={"UniqueName": "production"}), 201)
        build = _build(c, service, "v1")
        ok(c.post(f"/Services/{service}/Environments/{env['sid']}/Deployments", data={"BuildSid": build}), 201)
    assert _call(first, "shop.localhost").json()["version"] == "v1"
    assert first.engine.stop() == 0
    # engine_factory returns as soon as /readyz says 200: the deployment must be served by then.
    api_port = free_port()
    engine = engine_factory(backend=control_docker_backend, args=["--api-port", str(api_port), "--data-dir", str(tmp_path / "data")])
    response = httpx.get(f"{engine.url}/version", headers={"Host": f"shop.localhost:{engine.port}"}, timeout=30)
    assert response.status_code == 200 and response.json()["version"] == "v1"


LOGGING_JS = """exports.handler = (context, event, callback) => {
  console.log('handled ' + event.n);
  console.error('complaint ' + event.n);
  callback(null, { n: event.n });
};
"""


@pytest.mark.docker
def test_handler_lines_and_invocations_reach_the_logs_resource_and_cannot_flood_it(
    engine_factory: EngineLauncher, tmp_path: Path, control_docker_backend: str, docker_available: None,
) -> None:
    """`max_log_entries_per_environment` (here 6) holds however many lines a handler writes."""
    control = start_control_engine(engine_factory, tmp_path / "data", backend=control_docker_backend,
                                   config={"max_log_entries_per_environment": 6})
    account = control.account("team-a")
    with account.client() as c:
        service = make_service(c, "logs")["sid"]
        env = ok(c.post(f"/Services/{service}/Environments", data={"UniqueName": "production"}), 201)["sid"]
        fn = upload(c, service, "function", "/talk", LOGGING_JS.encode(), "talk.js")
        other = upload(c, service, "function", "/quiet", (VERSION_JS % "q").encode(), "quiet.js")
        build = ok(c.post(f"/Services/{service}/Builds", data={"FunctionVersions": [fn["sid"], other["sid"]]}), 201)["sid"]
        assert wait_build(c, service, build)["status"] == "completed"
        ok(c.post(f"/Services/{service}/Environments/{env}/Deployments", data={"BuildSid": build}), 201)
        logs_url = f"/Services/{service}/Environments/{env}/Logs"

        assert _call(control, "logs.localhost", "/talk?n=1").json() == {"n": "1"}

        def lines(**params: str) -> list[dict[str, Any]]:
            return ok(c.get(logs_url, params={"PageSize": "50", **params}))["logs"]

        def has_first_call() -> list[dict[str, Any]]:
            got = [line for line in lines() if line["function_sid"]]
            assert [line["message"] for line in got[:2]] == ["handled 1", "complaint 1"], got
            assert len(got) == 3 and got[2]["message"].startswith("GET /talk 200 in "), got
            return got

        got = _eventually(has_first_call)
        handled, complaint, invocation = got[-3:]
        assert handled["level"] == "INFO" and complaint["level"] == "ERROR"
        assert handled["function_sid"] == fn["function_sid"] and handled["build_sid"] == build
        assert handled["request_sid"] == invocation["request_sid"] and handled["request_sid"].startswith("RQ")
        assert handled["sid"].startswith("NO")
        assert ok(c.get(f"{logs_url}/{handled['sid']}"))["message"] == "handled 1"

        _call(control, "logs.localhost", "/quiet")
        def quiet_filtered() -> None:
            got = lines(FunctionSid=other["function_sid"])
            assert [line["message"][:15] for line in got] == ["GET /quiet 200 "], got

        _eventually(quiet_filtered)
        assert lines(StartDate="2999-01-01T00:00:00Z") == []

        for n in range(2, 12):  # 30 lines, over the bound of 6
            _call(control, "logs.localhost", f"/talk?n={n}")

        def newest_kept() -> None:
            got = lines()
            assert len(got) <= 6, len(got)
            assert got[-1]["message"].startswith("GET /talk 200") and got[-2]["message"] == "complaint 11"

        _eventually(newest_kept)


@pytest.mark.docker
def test_deleting_an_account_with_the_cli_stops_its_traffic_on_the_running_engine(
    engine_factory: EngineLauncher, tmp_path: Path, control_docker_backend: str, docker_available: None,
) -> None:
    """The operator's CLI writes the store, not the engine: the converge pass must withdraw what it served."""
    control = start_control_engine(engine_factory, tmp_path / "data", backend=control_docker_backend,
                                   config={"converge_interval_s": 1.0})
    account = control.account("leaving")
    with account.client() as c:
        service = make_service(c, "gone")["sid"]
        env = ok(c.post(f"/Services/{service}/Environments", data={"UniqueName": "production"}), 201)["sid"]
        build = _build(c, service, "v1")
        ok(c.post(f"/Services/{service}/Environments/{env}/Deployments", data={"BuildSid": build}), 201)
    assert _call(control, "gone.localhost").status_code == 200
    done = control.cli("accounts", "delete", "leaving")
    assert done.returncode == 0, done.stderr

    def withdrawn() -> None:
        assert _call(control, "gone.localhost").status_code == 404

    _eventually(withdrawn, timeout=20)
    error(httpx.get(control.api + "/Services", auth=account.auth), 401)


@pytest.mark.docker
def test_redeploy_through_the_api_under_steady_load_fails_no_request_and_switches_once(
    engine_factory: EngineLauncher, tmp_path: Path, control_docker_backend: str, docker_available: None,
) -> None:
    import threading

    control = start_control_engine(engine_factory, tmp_path / "data", backend=control_docker_backend)
    account = control.account("team-a")
    with account.client() as c:
        service = make_service(c, "load")["sid"]
        env = ok(c.post(f"/Services/{service}/Environments", data={"UniqueName": "production"}), 201)["sid"]
        v1, v2 = _build(c, service, "v1"), _build(c, service, "v2")
        deployments = f"/Services/{service}/Environments/{env}/Deployments"
        ok(c.post(deployments, data={"BuildSid": v1}), 201)

        results: list[tuple[float, float, int, str]] = []  # (sent, answered, status, version)
        stop = threading.Event()

        deadline = time.monotonic() + 180

        def client() -> None:  # 127.0.0.1 only, bounded by time and count; runs until the switch is over
            with httpx.Client(timeout=30) as http:
                for _ in range(50_000):
                    if stop.is_set() or time.monotonic() > deadline:
                        return
                    sent = time.monotonic()
                    r = http.get(f"{control.engine.url}/version", headers={"Host": f"load.localhost:{control.engine.port}"})
                    results.append((sent, time.monotonic(), r.status_code,
                                    r.json().get("version", "?") if r.status_code == 200 else r.text[:200]))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1)
            ok(c.post(deployments, data={"BuildSid": v2}), 201)
            time.sleep(2)
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
    failed = [r for r in results if r[2] != 200]
    assert not failed, failed[:5]
    versions = {r[3] for r in results}
    assert versions == {"v1", "v2"}, versions
    first_v2_answered = min(answered for _, answered, _, version in results if version == "v2")
    late_v1 = [r for r in results if r[3] == "v1" and r[0] > first_v2_answered]
    assert not late_v1, f"{len(late_v1)} requests sent after the first v2 answer were served by v1"
