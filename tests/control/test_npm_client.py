"""The real npm deploy client, `@twilio-labs/serverless-api` (what `twilio-run deploy` and the Twilio
CLI's serverless plugin use), pointed at the engine with a `node --require` preload: it deploys a
project (JS functions, an asset, variables, package.json dependencies), redeploys, activates the
older build and reads the logs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine import pydeps
from tests.conftest import EngineLauncher
from tests.control.conftest import ControlEngine, ok, start_control_engine

SERVERLESS_API_VERSION = "5.7.0"
HERE = Path(__file__).resolve().parent / "npm"


FUNCTION = """const isNumber = require('is-number');
exports.handler = (context, event, callback) =>
  callback(null, { version: '%s', greeting: context.GREETING, numeric: isNumber('42') });
"""


@pytest.fixture(scope="session")
def serverless_api_home() -> Path:
    """@twilio-labs/serverless-api, npm-installed once into the engine's cache dir."""
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        pytest.fail("the npm client test needs `node` and `npm` on PATH")
    home = pydeps.cache_root() / "serverless-api"
    marker = home / f".complete-{SERVERLESS_API_VERSION}"
    if not marker.is_file():
        home.mkdir(parents=True, exist_ok=True)
        manifest = {"name": "serverless-api-under-test", "version": "0.0.0", "private": True,
                    "dependencies": {"@twilio-labs/serverless-api": SERVERLESS_API_VERSION}}
        (home / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
        result = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--no-update-notifier", "--ignore-scripts"],
                                cwd=home, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            pytest.fail(f"npm install of @twilio-labs/serverless-api failed in {home}:\n{result.stderr[-2000:]}")
        marker.touch()
    return home


def _project(root: Path, version: str) -> Path:
    (root / "functions").mkdir(parents=True)
    (root / "assets").mkdir()
    (root / "functions" / "version.js").write_text(FUNCTION % version)
    (root / "assets" / "build.txt").write_text(version)
    (root / "package.json").write_text(json.dumps({"name": "npm-shop", "version": "1.0.0", "private": True,
                                                   "dependencies": {"is-number": "7.0.0"}}))
    return root


def _client(home: Path, control: ControlEngine, sid: str, token: str, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "ENGINE_"))}
    env.update(SERVERLESS_API_HOME=str(home), ENGINE_API_ROOT=control.api.removesuffix("/v1"),
               ENGINE_ACCOUNT_SID=sid, ENGINE_AUTH_TOKEN=token)
    done = subprocess.run(["node", "--require", str(HERE / "preload.js"), str(HERE / "client.js"), *args],
                          capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{control.engine.logs()[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.docker
def test_npm_deploy_client_deploys_redeploys_activates_an_older_build_and_reads_logs(
    engine_factory: EngineLauncher, tmp_path: Path, control_docker_backend: str, docker_available: None, serverless_api_home: Path,
) -> None:
    control = start_control_engine(engine_factory, tmp_path / "data", backend=control_docker_backend)
    account = control.account("team-a")

    def call(host: str, path: str = "/version") -> httpx.Response:
        return httpx.get(f"{control.engine.url}{path}", headers={"Host": f"{host}:{control.engine.port}"}, timeout=30)

    first = _client(serverless_api_home, control, account.sid, account.token, "deploy", str(_project(tmp_path / "v1", "v1")))
    assert first["domain"] == "npm-shop-dev.localhost"
    assert call(first["domain"]).json() == {"version": "v1", "greeting": "hello", "numeric": True}
    assert call(first["domain"], "/build.txt").text == "v1"

    second = _client(serverless_api_home, control, account.sid, account.token, "deploy", str(_project(tmp_path / "v2", "v2")))
    assert second["serviceSid"] == first["serviceSid"] and second["buildSid"] != first["buildSid"]
    assert call(first["domain"]).json()["version"] == "v2"

    _client(serverless_api_home, control, account.sid, account.token, "activate", first["buildSid"], first["serviceSid"])
    assert call(first["domain"]).json()["version"] == "v1"

    logs = _client(serverless_api_home, control, account.sid, account.token, "logs", first["serviceSid"])
    serving = logs["messages"].index(f"now serving build {first['buildSid']}")
    assert any(m.startswith("GET /version 200 in ") for m in logs["messages"][serving + 1:]), logs
    with account.client() as c:
        build = ok(c.get(f"/Services/{first['serviceSid']}/Builds/{first['buildSid']}"))
        assert build["dependencies"] == [{"name": "is-number", "version": "7.0.0"}]
