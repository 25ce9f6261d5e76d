"""Folder services beside deployed environments on one engine: each reached only at its own Host,
so an unknown or withdrawn host is 404, and a name or host clash between the two is refused naming both."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import PROJECTS, EngineLauncher
from tests.control.conftest import ControlEngine, error, make_service, ok, start_control_engine, upload, wait_build

HELLO_JS = "exports.handler = (context, event, callback) => callback(null, { from: 'deployed' });\n"


def _get(engine: ControlEngine, host: str, path: str) -> httpx.Response:
    return httpx.get(f"{engine.engine.url}{path}", headers={"Host": f"{host}:{engine.engine.port}"}, timeout=30)


@pytest.mark.docker
def test_a_folder_service_and_a_deployed_environment_share_one_engine_and_cannot_take_each_others_host(
    engine_factory: EngineLauncher, tmp_path: Path, control_docker_backend: str, docker_available: None,
) -> None:
    control = start_control_engine(engine_factory, tmp_path / "data", backend=control_docker_backend,
                                   projects=(f"alpha={PROJECTS / 'svc-alpha'}",))
    account = control.account("team-a")
    with account.client() as c:
        # The folder service answers at its host only.
        assert _get(control, "alpha.localhost", "/alpha-only").text == "only in alpha"
        assert _get(control, "nobody.localhost", "/alpha-only").status_code == 404
        assert _get(control, "127.0.0.1", "/alpha-only").status_code == 404

        # An environment whose domain is the folder service's host is refused, naming both.
        alpha = make_service(c, "alpha")["sid"]
        body = error(c.post(f"/Services/{alpha}/Environments", data={"UniqueName": "prod"}), 409,
                     "alpha.localhost", "svc-alpha", "folder service")
        assert "DomainSuffix" in body["message"]

        # A deployed environment answers at its own host, beside the folder service.
        shop = make_service(c, "shop")["sid"]
        env = ok(c.post(f"/Services/{shop}/Environments", data={"UniqueName": "dev", "DomainSuffix": "dev"}), 201)
        fn = upload(c, shop, "function", "/hello", HELLO_JS.encode(), "hello.js")
        build = ok(c.post(f"/Services/{shop}/Builds", data={
            "FunctionVersions": fn["sid"], "Runtime": "node22", "Dependencies": '"[]"'}), 201)
        assert wait_build(c, shop, build["sid"])["status"] == "completed"
        ok(c.post(f"/Services/{shop}/Environments/{env['sid']}/Deployments", data={"BuildSid": build["sid"]}), 201)
        assert _get(control, "shop-dev.localhost", "/hello").json() == {"from": "deployed"}
        assert _get(control, "shop-dev.localhost", "/alpha-only").status_code == 404
        assert _get(control, "alpha.localhost", "/hello").status_code == 404
        assert _get(control, "alpha.localhost", "/alpha-only").text == "only in alpha"

        # Withdrawn: its host is 404, not the folder service's.
        assert c.delete(f"/Services/{shop}/Environments/{env['sid']}").status_code == 204
        assert _get(control, "shop-dev.localhost", "/hello").status_code == 404
        assert _get(control, "shop-dev.localhost", "/alpha-only").status_code == 404
        assert _get(control, "alpha.localhost", "/alpha-only").text == "only in alpha"


@pytest.mark.docker
def test_a_folder_service_given_at_restart_keeps_its_host_and_the_clashing_environment_says_why(
    engine_factory: EngineLauncher, tmp_path: Path, control_docker_backend: str, docker_available: None,
) -> None:
    first = start_control_engine(engine_factory, tmp_path / "data", backend=control_docker_backend)
    account = first.account("team-a")
    with account.client() as c:
        alpha = make_service(c, "alpha")["sid"]
        env = ok(c.post(f"/Services/{alpha}/Environments", data={"UniqueName": "prod"}), 201)
        assert env["domain_name"] == "alpha.localhost"
        fn = upload(c, alpha, "function", "/hello", HELLO_JS.encode(), "hello.js")
        build = ok(c.post(f"/Services/{alpha}/Builds", data={
            "FunctionVersions": fn["sid"], "Runtime": "node22", "Dependencies": '"[]"'}), 201)
        assert wait_build(c, alpha, build["sid"])["status"] == "completed"
        ok(c.post(f"/Services/{alpha}/Environments/{env['sid']}/Deployments", data={"BuildSid": build["sid"]}), 201)
    assert _get(first, "alpha.localhost", "/hello").json() == {"from": "deployed"}
    assert first.engine.stop() == 0

    # The same store, now with a folder service at the deployed environment's host: the engine
    # starts, the folder service has its host, and the environment's Logs name both.
    second = start_control_engine(engine_factory, tmp_path / "data", backend=control_docker_backend,
                                  projects=(f"alpha={PROJECTS / 'svc-alpha'}",))
    assert _get(second, "alpha.localhost", "/alpha-only").text == "only in alpha"
    assert _get(second, "alpha.localhost", "/hello").status_code == 404
    with account.client() as c:
        c.base_url = httpx.URL(second.api + "/")
        logs = ok(c.get(f"/Services/{alpha}/Environments/{env['sid']}/Logs"))["logs"]
    clash = [line["message"] for line in logs if "clashes" in line["message"]]
    assert clash and "folder service 'alpha'" in clash[-1] and "svc-alpha" in clash[-1], logs
    assert "converge_failed" in second.engine.log_path.read_text()
