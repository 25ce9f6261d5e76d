"""Drives the real Node.js runner (runner-image/node/runner.js) over pipes, with the real `twilio`.

`node_runner(files, ...)` writes a temporary project (a dict of relative path → text), starts
`node runner.js`, sends `init` and returns a `NodeRunner` already past `ready`. Every line the runner
writes on stdout is checked to be one JSON protocol frame (a stray byte fails the test), and
`invoke()` collects the frames of one invocation up to its `done`. Runners are killed at the end
of the test.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
NODE_DIR = REPO / "runner-image" / "node"
RUNNER = NODE_DIR / "runner.js"
FRAME_TYPES = {"ready", "init_error", "log", "result", "done"}
DEFAULT_LIMITS = {"max_log_bytes": 65536, "max_response_bytes": 4194304, "max_frame_bytes": 8388608}


@pytest.fixture(scope="session")
def node_bin() -> str:
    """The local `node`, with the runner's npm dependencies installed (npm ci on a fresh checkout)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("`node` not found on PATH: the Node.js runner tests need Node.js 20 or newer")
    if not (NODE_DIR / "node_modules" / "twilio" / "package.json").is_file():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("runner-image/node/node_modules is missing and `npm` is not on PATH to install it")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=600,
                       stdout=subprocess.DEVNULL)
    return node


def functions_of(root: Path) -> list[dict[str, str]]:
    """init.functions for every .js file under functions/ (names without .private/.protected)."""
    entries = []
    for path in sorted((root / "functions").rglob("*.js")):
        rel = path.relative_to(root).as_posix()
        stem = path.relative_to(root / "functions").as_posix()[: -len(".js")]
        visibility = "public"
        for vis in ("private", "protected"):
            if stem.endswith("." + vis):
                stem, visibility = stem[: -len(vis) - 1], vis
        entries.append({"name": stem, "file": rel, "url_path": "/" + stem, "visibility": visibility})
    return entries


def assets_of(root: Path) -> list[dict[str, str]]:
    entries = []
    if (root / "assets").is_dir():
        for path in sorted((root / "assets").rglob("*")):
            if path.is_file():
                rel = path.relative_to(root / "assets").as_posix()
                visibility = "private" if ".private." in rel else "protected" if ".protected." in rel else "public"
                entries.append({"url_path": "/" + rel, "file": path.relative_to(root).as_posix(), "visibility": visibility})
    return entries


@dataclass
class Outcome:
    """The frames of one invocation: its result, its done, and its log lines (in order)."""

    result: dict[str, Any]
    done: dict[str, Any]
    logs: list[dict[str, Any]] = field(default_factory=list)
    frames: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> int:
        return self.result["status"]

    @property
    def body(self) -> bytes:
        import base64

        if self.result.get("body_encoding") == "base64":
            return base64.b64decode(self.result["body"])
        return self.result.get("body", "").encode("utf-8")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        values = self.headers(name)
        return values[0] if values else None

    def headers(self, name: str) -> list[str]:
        return [v for k, v in self.result["headers"] if k.lower() == name.lower()]

    def messages(self, level: str | None = None) -> list[str]:
        return [f["message"] for f in self.logs if level is None or f["level"] == level]


class NodeRunner:
    """One runner process fed over pipes."""

    def __init__(self, node: str, root: Path, init: dict[str, Any], process_env: dict[str, str] | None = None) -> None:
        self.root = root
        self.init_message = init
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "NODE_", "RUNNER_"))}
        self.proc = subprocess.Popen(
            [node, str(RUNNER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=root, env={**env, **(process_env or {})},
            start_new_session=True,  # as the process backend starts workers (lib/processes.js: session mode)
        )
        self.frames: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.history: list[dict[str, Any]] = []
        self.violations: list[bytes] = []
        self.stderr = bytearray()
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        max_frame = self.init_message.get("limits", DEFAULT_LIMITS)["max_frame_bytes"]
        for line in iter(self.proc.stdout.readline, b""):
            try:
                frame = json.loads(line)
                ok = isinstance(frame, dict) and frame.get("type") in FRAME_TYPES and len(line) <= max_frame
            except ValueError:
                ok = False
            if not ok:
                self.violations.append(line[:500])
                continue
            self.history.append(frame)
            self.frames.put(frame)
        self.frames.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for chunk in iter(lambda: self.proc.stderr.read1(65536), b""):  # type: ignore[union-attr]
            self.stderr += chunk

    def send(self, message: dict[str, Any]) -> None:
        self.send_raw(json.dumps(message).encode() + b"\n")

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def next_frame(self, timeout: float = 10) -> dict[str, Any]:
        try:
            frame = self.frames.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no frame from the runner within {timeout}s; stderr: {self.stderr.decode(errors='replace')[-2000:]}")
        if frame is None:
            raise AssertionError(f"runner exited ({self.proc.wait()}); stderr: {self.stderr.decode(errors='replace')[-3000:]}")
        return frame

    def until(self, types: set[str], timeout: float = 10) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Frames up to the first of `types`: (that frame, the ones before it)."""
        before = []
        deadline = time.monotonic() + timeout
        while True:
            frame = self.next_frame(max(0.01, deadline - time.monotonic()))
            if frame["type"] in types:
                return frame, before
            before.append(frame)

    def start(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        self.send(self.init_message)
        return self.until({"ready", "init_error"}, timeout=30)

    def invoke(self, function: str, event: dict[str, Any] | None = None, context: dict[str, Any] | None = None,
               *, timeout: float = 15, invocation_id: str | None = None) -> Outcome:
        """Run one invocation and collect its frames up to `done` (checking the protocol's order)."""
        invocation_id = invocation_id or uuid.uuid4().hex
        ctx = {"PATH": "/" + function, "DOMAIN_NAME": "example.localhost:3000", "SERVICE_SID": "ZS" + "0" * 32,
               "ENVIRONMENT_SID": "ZE" + "0" * 32}
        ctx.update(context or {})
        event = {"request": {"headers": {}, "cookies": {}}} if event is None else event
        self.send({"type": "invoke", "id": invocation_id, "function": function, "event": event, "context": ctx})
        frames: list[dict[str, Any]] = []
        result = done = None
        deadline = time.monotonic() + timeout
        while done is None:
            frame = self.next_frame(max(0.01, deadline - time.monotonic()))
            frames.append(frame)
            if frame["type"] == "result":
                assert frame["id"] == invocation_id and result is None, frame
                result = frame
            elif frame["type"] == "done":
                assert frame["id"] == invocation_id and result is not None, frame
                done = frame
            else:
                assert frame["type"] == "log", frame
        assert not self.violations, self.violations
        logs = [f for f in frames if f["type"] == "log" and f["id"] == invocation_id]
        return Outcome(result=result, done=done, logs=logs, frames=frames)

    def close(self) -> int:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (subprocess.TimeoutExpired, OSError):
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return self.proc.returncode


RunnerFactory = Callable[..., NodeRunner]


@pytest.fixture
def node_runner(node_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerFactory]:
    """Factory: `node_runner({"functions/x.js": "..."}, env=..., limits=..., dev_mode=...)` → a ready runner.

    `process_env` adds variables to the runner process's own environment (RUNNER_PRELOAD_IDLE_MS).
    """
    started: list[NodeRunner] = []

    def start(files: dict[str, str | bytes], *, env: dict[str, str] | None = None, limits: dict[str, int] | None = None,
              dev_mode: bool = False, expect_ready: bool = True, init: dict[str, Any] | None = None,
              process_env: dict[str, str] | None = None) -> NodeRunner:
        root = tmp_path_factory.mktemp("project")
        for rel, content in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)
        message = {
            "type": "init", "protocol": 1, "service": "test", "project_root": str(root),
            "functions": functions_of(root), "assets": assets_of(root), "env": env or {},
            "limits": {**DEFAULT_LIMITS, **(limits or {})}, "dev_mode": dev_mode,
        }
        message.update(init or {})
        runner = NodeRunner(node_bin, root, message, process_env)
        started.append(runner)
        if expect_ready:
            frame, before = runner.start()
            assert frame["type"] == "ready", (frame, before, runner.stderr.decode(errors="replace"))
            runner.ready = frame  # type: ignore[attr-defined]
            runner.boot_logs = before  # type: ignore[attr-defined]
        return runner

    yield start
    for runner in started:
        runner.close()
