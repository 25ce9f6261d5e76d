"""A real engine process with the control API on (no folder services), and accounts made by the
operator CLI (`python -m engine accounts create`) on the same store."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.conftest import EngineLauncher, RunningEngine, free_port

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Account:
    sid: str
    token: str
    api: str  # http://127.0.0.1:PORT/v1

    @property
    def auth(self) -> tuple[str, str]:
        return (self.sid, self.token)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.api, auth=self.auth, timeout=60)


@dataclass
class ControlEngine:
    engine: RunningEngine
    api: str
    data_dir: Path
    database_url: str | None = None  # a shared PostgreSQL store instead of the SQLite file in data_dir

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        store = ["--database-url", self.database_url] if self.database_url else ["--data-dir", str(self.data_dir)]
        return subprocess.run(
            [sys.executable, "-m", "engine", *args, *store],
            capture_output=True, text=True, timeout=120, cwd=REPO,
        )

    def account(self, name: str, *flags: str) -> Account:
        done = self.cli("accounts", "create", name, *flags)
        assert done.returncode == 0, done.stderr
        made = json.loads(done.stdout)
        return Account(made["account_sid"], made["auth_token"], self.api)


def start_control_engine(
    factory: EngineLauncher, data_dir: Path, backend: str = "process", config: dict[str, Any] | None = None,
    projects: tuple[str | Path, ...] = (),
    database_url: str | None = None,
) -> ControlEngine:
    """`projects`: folder services served beside the deployed ones (by Host only). `database_url`:
    the store on PostgreSQL (migrated first with `db upgrade`, as operators do), builds in data_dir."""
    store = []
    if database_url:
        from engine.control.store import migrate, normalise_url

        migrate(normalise_url(database_url))  # what `db upgrade` runs, without a process of its own
        store = ["--database-url", database_url]
    for attempt in range(3):
        api_port = free_port()
        try:
            engine = factory(*projects, backend=backend, config=config,
                             args=["--api-port", str(api_port), "--data-dir", str(data_dir), *store])
            break
        except AssertionError as exc:  # the API port was taken between free_port() and the bind
            if "address already in use" not in str(exc) or attempt == 2:
                raise
    api = f"http://127.0.0.1:{api_port}/v1"
    for _ in range(100):  # the API listener opens right after /readyz says 200
        try:
            httpx.get(api + "/Services", timeout=2)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    return ControlEngine(engine, api, data_dir, database_url)


@pytest.fixture
def control_engine(engine_factory: EngineLauncher, tmp_path: Path) -> Iterator[ControlEngine]:
    yield start_control_engine(engine_factory, tmp_path / "data")


# --- API helpers shared by the modules ---------------------------------------------------------


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, f"{response.status_code} {response.text}"
    return response.json() if response.content else {}


def error(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    """A 4xx in the hosted error shape whose message names each of `words`."""
    assert response.status_code == status, f"{response.status_code} {response.text}"
    body = response.json()
    assert set(body) == {"code", "message", "more_info", "status"}, body
    assert body["status"] == status and isinstance(body["code"], int)
    for word in words:
        assert word in body["message"], (word, body)
    return body


def make_service(c: httpx.Client, name: str = "shop") -> dict[str, Any]:
    return ok(c.post("/Services", data={"UniqueName": name, "FriendlyName": name.title()}), 201)


def upload(c: httpx.Client, service: str, kind: str, path: str, content: bytes, filename: str,
           visibility: str = "public", content_type: str = "application/javascript") -> dict[str, Any]:
    """A Function or Asset with one version; returns the version."""
    segment = "Functions" if kind == "function" else "Assets"
    entry = ok(c.post(f"/Services/{service}/{segment}", data={"FriendlyName": path}), 201)
    return ok(c.post(
        f"/Services/{service}/{segment}/{entry['sid']}/Versions",
        data={"Path": path, "Visibility": visibility},
        files={"Content": (filename, content, content_type)},
    ), 201)


def wait_build(c: httpx.Client, service: str, build_sid: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = ok(c.get(f"/Services/{service}/Builds/{build_sid}/Status"))["status"]
        if status != "building":
            return ok(c.get(f"/Services/{service}/Builds/{build_sid}"))
        time.sleep(0.5)
    raise AssertionError(f"build {build_sid} still building after {timeout}s")
