"""`python -m engine deploy|activate|env|logs`: the engine's own client, on the public API only."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import EngineLauncher
from tests.control.conftest import REPO, ControlEngine, start_control_engine



def _project(root: Path, version: str) -> Path:
    (root / "functions").mkdir(parents=True)
    (root / "assets").mkdir()
    (root / "functions" / "version.py").write_text(
        "def handler(context, event, callback):\n"
        f"    return callback(None, {{'version': '{version}', 'greeting': getattr(context, 'GREETING', None)}})\n")
    (root / "assets" / "logo.txt").write_text("the same in every version")
    (root / ".env").write_text("GREETING=hello\n")
    return root


def _engine_cli(control: ControlEngine, sid: str, token: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    env.update(ENGINE_ACCOUNT_SID=sid, ENGINE_AUTH_TOKEN=token)
    done = subprocess.run([sys.executable, "-m", "engine", *args, "--api", control.api, "--service", "cli-shop",
                           "--environment", "dev"], capture_output=True, text=True, timeout=900, env=env, cwd=REPO)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.docker
def test_deploy_command_uploads_only_what_changed_and_activates_env_and_logs_work(
    engine_factory: EngineLauncher, tmp_path: Path, control_docker_backend: str, docker_available: None,
) -> None:
    control = start_control_engine(engine_factory, tmp_path / "data", backend=control_docker_backend)
    account = control.account("team-a")

    def call() -> dict[str, str]:
        return httpx.get(f"{control.engine.url}/version", headers={"Host": f"cli-shop-dev.localhost:{control.engine.port}"},
                         timeout=30).json()

    first = _engine_cli(control, account.sid, account.token, "deploy", str(_project(tmp_path / "v1", "v1")))
    assert "2 of 2 files uploaded" in first and "cli-shop-dev.localhost" in first
    assert call() == {"version": "v1", "greeting": "hello"}
    again = _engine_cli(control, account.sid, account.token, "deploy", str(_project(tmp_path / "v1-again", "v1")))
    assert "0 of 2 files uploaded" in again
    second = _engine_cli(control, account.sid, account.token, "deploy", str(_project(tmp_path / "v2", "v2")))
    assert "1 of 2 files uploaded" in second and "unchanged asset /logo.txt" in second
    assert call()["version"] == "v2"

    first_build = first.split("deployed build ")[1].split(":")[0]
    _engine_cli(control, account.sid, account.token, "activate", "--build", first_build)
    assert call()["version"] == "v1"

    _engine_cli(control, account.sid, account.token, "env", "set", "GREETING=hi")
    assert "GREETING=hi" in _engine_cli(control, account.sid, account.token, "env", "list")
    deadline = time.monotonic() + 20
    while call()["greeting"] != "hi":
        assert time.monotonic() < deadline, "the variable did not reach new invocations"
        time.sleep(0.2)
    _engine_cli(control, account.sid, account.token, "env", "unset", "GREETING")
    assert _engine_cli(control, account.sid, account.token, "env", "list").strip() == ""

    logs = _engine_cli(control, account.sid, account.token, "logs")
    assert f"now serving build {first_build}" in logs and "GET /version 200" in logs
