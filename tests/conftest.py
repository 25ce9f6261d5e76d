"""Shared fixtures: a real engine process on 127.0.0.1, per backend, cleaned up after each test.

`engine_factory(*projects, backend=..., config={...})` (or `module_engine_factory`) starts `python -m engine serve` as a child
process on free ports, waits until `/readyz` answers 200, and stops it (SIGTERM, then SIGKILL) at
the end of the test. The backend list comes from `--backends` (default: process,docker,docker-runsc); docker
tests fail, never skip, when no daemon can be reached.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from tests.postgres import pg_url  # noqa: F401  (a fresh PostgreSQL database per test)

REPO = Path(__file__).resolve().parent.parent
PROJECTS = Path(__file__).resolve().parent / "projects"
EXAMPLES = REPO / "examples"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backends",
        default=os.environ.get("ENGINE_TEST_BACKENDS", "process,docker,docker-runsc"),
        help="comma-separated backends the conformance suite runs on (default: all three: process, docker, docker-runsc)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "docker_backend" in metafunc.fixturenames:
        # Docker-only modules: the docker rows of --backends (docker = runc, docker-runsc = gVisor).
        chosen = [b.strip() for b in metafunc.config.getoption("--backends").split(",") if b.strip().startswith("docker")]
        metafunc.parametrize(
            "docker_backend", [pytest.param(b, marks=pytest.mark.docker, id=b) for b in chosen or ["docker"]],
            scope="module",
        )
    if "control_docker_backend" in metafunc.fixturenames:
        # Docker tests of the control plane (stores, replicas, warmth): the OCI runtime does not
        # change what they prove, so they run once, on runc (on gVisor only if it alone is chosen).
        chosen = [b.strip() for b in metafunc.config.getoption("--backends").split(",") if b.strip().startswith("docker")]
        pick = ["docker"] if "docker" in chosen or not chosen else chosen[:1]
        metafunc.parametrize(
            "control_docker_backend", [pytest.param(b, marks=pytest.mark.docker, id=b) for b in pick], scope="module",
        )
    if "backend" in metafunc.fixturenames:
        backends = [b.strip() for b in metafunc.config.getoption("--backends").split(",") if b.strip()]
        marks = {"process": [], "docker": [pytest.mark.docker], "docker-runsc": [pytest.mark.docker]}
        metafunc.parametrize(
            "backend", [pytest.param(b, marks=marks.get(b, []), id=b) for b in backends], scope="module"
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)


def write_toml(path: Path, data: dict[str, Any]) -> None:
    """A small TOML writer for the nested dicts of settings the tests use."""
    lines: list[str] = []

    def emit(table: dict[str, Any], prefix: str) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in table.items() if isinstance(v, dict)}
        if prefix and scalars:
            lines.append(f"[{prefix}]")
        for key, value in scalars.items():
            lines.append(f"{key} = {toml_value(value)}")
        for key, value in tables.items():
            quoted = f'"{key}"' if not key.replace("-", "").replace("_", "").isalnum() else key
            emit(value, f"{prefix}.{quoted}" if prefix else quoted)

    emit(data, "")
    path.write_text("\n".join(lines) + "\n")


@dataclass
class RunningEngine:
    """A served engine: its URLs, its process and its captured output."""

    url: str
    admin_url: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    backend: str
    extra: dict[str, Any] = field(default_factory=dict)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 30), **kwargs)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def backend_args(backend: str) -> list[str]:
    if backend == "process":
        return ["--backend", "process"]
    if backend == "docker":
        return ["--backend", "docker", "--runtime", "runc"]
    if backend == "docker-runsc":
        return ["--backend", "docker", "--runtime", "runsc"]
    raise ValueError(f"unknown backend {backend!r}")


class EngineLauncher:
    """Starts engines as child processes and stops them all on close()."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[RunningEngine] = []

    def __call__(
        self,
        *projects: str | Path,
        backend: str = "process",
        config: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        ready_timeout: float = 300,
        wait_ready: bool = True,
    ) -> RunningEngine:
        for attempt in range(3):
            running = self._start(projects, backend, config, env, args)
            if not wait_ready:
                return running
            try:
                wait_until_ready(running, ready_timeout)
                return running
            except AssertionError as exc:
                # free_port() closes the port it found; an outgoing connection may take it before the
                # engine binds it. That is the test's race, not the engine's: try other ports.
                if "address already in use" not in str(exc) or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _start(
        self, projects: tuple[str | Path, ...], backend: str, config: dict[str, Any] | None,
        env: dict[str, str] | None, args: list[str] | None,
    ) -> RunningEngine:
        n = len(self.started)
        port, admin_port = free_port(), free_port()
        cmd = [
            sys.executable, "-m", "engine", "serve", *[str(p) for p in projects],
            "--host", "127.0.0.1", "--port", str(port), "--admin-port", str(admin_port),
            *backend_args(backend), *(args or []),
        ]
        if config:
            cfg = self.workdir / f"engine-{n}.toml"
            write_toml(cfg, config)
            cmd += ["--config", str(cfg)]
        log_path = self.workdir / f"engine-{n}.log"
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
        child_env.update(env or {})
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env, cwd=self.workdir)
        running = RunningEngine(
            url=f"http://127.0.0.1:{port}", admin_url=f"http://127.0.0.1:{admin_port}",
            port=port, proc=proc, log_path=log_path, backend=backend,
        )
        self.started.append(running)
        return running

    def close(self) -> None:
        for running in self.started:
            running.stop()


@pytest.fixture
def engine_factory(tmp_path: Path) -> Iterator[EngineLauncher]:
    """Function-scoped: engines started in a test are stopped when it ends."""
    launcher = EngineLauncher(tmp_path)
    yield launcher
    launcher.close()


@pytest.fixture(scope="module")
def module_engine_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineLauncher]:
    """Module-scoped: one engine serves every row of a conformance module."""
    launcher = EngineLauncher(tmp_path_factory.mktemp("engine"))
    yield launcher
    launcher.close()


def wait_until_ready(running: RunningEngine, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running.proc.poll() is not None:
            raise AssertionError(f"engine exited with {running.proc.returncode}:\n{running.logs()[-5000:]}")
        try:
            if httpx.get(running.admin_url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    running.stop()
    raise AssertionError(f"engine not ready within {timeout}s:\n{running.logs()[-5000:]}")


@pytest.fixture(scope="session")
def docker_available() -> None:
    """Docker tests fail (not skip) when the daemon is missing: the container path must be proven."""
    if shutil.which("docker") is None:
        pytest.fail("docker CLI not found: run `make test`, which provisions Docker (scripts/ensure-docker)")
    result = subprocess.run(["docker", "info"], capture_output=True, timeout=30)
    if result.returncode != 0:
        pytest.fail("no Docker daemon reachable: run `make test`, which starts one (scripts/ensure-docker)")
