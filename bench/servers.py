"""Starting and stopping the servers under test: the engine, twilio-run, the bare aiohttp app.

Each server is a child process in its own session, listening on 127.0.0.1 on a free port, with
its output in bench/results/logs/. `stop()` is idempotent: SIGTERM (the engine drains and removes
its containers), then SIGKILL to the whole group; for the engine, any container it still owns is
removed by the bench afterwards.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import accounting
from bench.plan import BENCH_DIR, LOGS, NODE_DIR, REPO, Handler, Row

LISTEN_LOCALHOST_JS = BENCH_DIR / "listen_localhost.js"
STOP_TIMEOUT_S = 30.0


class StartFailed(RuntimeError):
    """The server exited or never became ready; the message is the reason for the row's n/a."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Reply:
    status: int
    body: str
    seconds: float


def request(port: int, handler: Handler, timeout_s: float = 30.0) -> Reply:
    """One request on a fresh connection, timed from connect to the last byte of the body."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if handler.body else {}
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request(handler.method, handler.path, body=handler.body or None, headers=headers)
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace")
        return Reply(response.status, body, time.perf_counter() - started)
    finally:
        conn.close()


def get_status(port: int, path: str, timeout_s: float = 2.0) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


@dataclass
class Server:
    """A started server process."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    err_path: Path
    admin_port: int | None = None
    docker: bool = False  # the engine on the docker backend: it owns worker containers
    _stopped: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def exited(self) -> bool:
        return self.proc.poll() is not None

    def failure(self) -> str:
        """Why the server stopped: the last meaningful line it wrote to stderr (or stdout)."""
        for path in (self.err_path, self.log_path):
            try:
                lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
            except OSError:
                continue
            errors = [ln for ln in lines if ln.lower().startswith("error")] or lines
            if errors:
                line = errors[-1]
                return line[len("error: "):] if line.lower().startswith("error: ") else line
        return f"exited with code {self.proc.returncode}"

    def wait_ready(self, timeout_s: float, probe: Handler | None = None) -> None:
        """Until /readyz answers 200 (engine) or `probe` answers at all (others)."""
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.exited():
                raise StartFailed(f"{self.name}: {self.failure()}")
            try:
                if self.admin_port is not None:
                    status, body = get_status(self.admin_port, "/readyz")
                    if status == 200:
                        return
                    last = body.strip()
                elif probe is not None:
                    request(self.port, probe, timeout_s=2.0)
                    return
            except OSError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise StartFailed(f"{self.name}: not ready within {timeout_s:.0f} s ({last})")

    def stop(self) -> None:
        """SIGTERM, wait, SIGKILL the group; then remove any container the engine left."""
        if self._stopped:
            return
        self._stopped = True
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # forked children (twilio-run) and stragglers
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        if self.docker:
            accounting.remove_containers(accounting.engine_container_ids(self.pid, running_only=False))


def _spawn(name: str, command: list[str], env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen[bytes], Path, Path]:
    LOGS.mkdir(parents=True, exist_ok=True)
    log_path, err_path = LOGS / f"{name}.log", LOGS / f"{name}.err"
    with log_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=cwd, env=env, start_new_session=True
        )
    return proc, log_path, err_path


def start_engine(
    name: str, row: Row, *, min_idle: int, max_workers: int, log_level: str, extra_env: dict[str, str] | None = None
) -> Server:
    """`python -m engine serve` for the row's project, backend and runtime."""
    port, admin = free_port(), free_port()
    command = [
        sys.executable, "-m", "engine", "serve", f"{row.service}={row.project}",
        "--host", "127.0.0.1", "--port", str(port), "--admin-port", str(admin),
        "--backend", row.backend or "process", "--min-idle", str(min_idle), "--max-workers", str(max_workers),
        "--log-level", log_level, "--log-format", "json",
    ]
    if row.runtime:
        command += ["--runtime", row.runtime]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    env.update(extra_env or {})
    proc, log_path, err_path = _spawn(name, command, env, REPO)
    return Server(name, proc, port, log_path, err_path, admin_port=admin, docker=row.docker)


def twilio_run_bin() -> Path:
    return NODE_DIR / "node_modules" / "twilio-run" / "bin" / "twilio-run.js"


def start_twilio_run(name: str, row: Row) -> Server:
    """twilio-run serving the JS bench project, bound to 127.0.0.1 by a preloaded listen() shim."""
    port = free_port()
    command = ["node", str(twilio_run_bin()), "start", str(row.project), "--port", str(port), *row.twilio_run_args]
    env = dict(os.environ)
    env["NODE_OPTIONS"] = f"--require {LISTEN_LOCALHOST_JS}"
    proc, log_path, err_path = _spawn(name, command, env, row.project)
    return Server(name, proc, port, log_path, err_path)


def start_aiohttp(name: str) -> Server:
    port = free_port()
    command = [sys.executable, "-m", "bench.bare_app", "--port", str(port)]
    proc, log_path, err_path = _spawn(name, command, dict(os.environ), REPO)
    return Server(name, proc, port, log_path, err_path)
