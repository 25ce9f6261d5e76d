"""The runner test harness: a real `runner.py` child process driven over pipes, as the engine does.

`RunnerHarness` checks every stdout line is one JSON object under the frame limit (`bad_lines`
collects anything else) and `invoke()` checks the order log* → result → log* → done.
"""

from __future__ import annotations

import json
import queue
import subprocess
import textwrap
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class InvokeOutcome:
    """Every frame one invocation produced, split by kind."""

    frames: list[dict[str, Any]]
    result: dict[str, Any]
    done: dict[str, Any]

    @property
    def logs(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == "log"]

    def messages(self, level: str | None = None) -> list[str]:
        return [f["message"] for f in self.logs if level is None or f["level"] == level]

    @property
    def status(self) -> int:
        return self.result["status"]

    @property
    def headers(self) -> list[list[str]]:
        return self.result["headers"]

    def header(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    @property
    def body(self) -> str:
        assert self.result["body_encoding"] == "utf-8", self.result
        return self.result["body"]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class RunnerHarness:
    proc: subprocess.Popen[bytes]
    project: Path
    init_message: dict[str, Any]
    max_frame_bytes: int
    frames: "queue.Queue[dict[str, Any] | None]" = field(default_factory=queue.Queue)
    bad_lines: list[bytes] = field(default_factory=list)
    stderr: bytearray = field(default_factory=bytearray)
    bootstrap_logs: list[dict[str, Any]] = field(default_factory=list)
    _count: int = 0

    def start_readers(self) -> None:
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if len(line) > self.max_frame_bytes or not line.endswith(b"\n"):
                self.bad_lines.append(line[:200])
                continue
            try:
                frame = json.loads(line)
            except ValueError:
                self.bad_lines.append(line[:200])
                continue
            if not isinstance(frame, dict) or "type" not in frame:
                self.bad_lines.append(line[:200])
                continue
            self.frames.put(frame)
        self.frames.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while chunk := self.proc.stderr.read1(65536):
            self.stderr += chunk

    def send(self, message: dict[str, Any] | bytes) -> None:
        assert self.proc.stdin is not None
        data = message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n"
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def next_frame(self, timeout: float = 15) -> dict[str, Any]:
        try:
            frame = self.frames.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no frame from the runner within {timeout}s; stderr: {bytes(self.stderr)[-3000:]!r}")
        if frame is None:
            raise AssertionError(f"runner closed its stdout; stderr: {bytes(self.stderr)[-3000:]!r}")
        return frame

    def no_frame(self, wait: float = 0.3) -> dict[str, Any] | None:
        try:
            return self.frames.get(timeout=wait)
        except queue.Empty:
            return None

    def init(self) -> dict[str, Any]:
        """Send init and return `ready` (bootstrap logs are kept in bootstrap_logs)."""
        self.send(self.init_message)
        while True:
            frame = self.next_frame()
            if frame["type"] == "log":
                assert frame["id"] is None
                self.bootstrap_logs.append(frame)
                continue
            return frame

    def invoke(self, function: str, event: dict[str, Any] | None = None, context: dict[str, Any] | None = None,
               timeout: float = 15) -> InvokeOutcome:
        """One invoke → frames up to and including `done`; checks the protocol order on the way."""
        self._count += 1
        inv_id = f"inv-{self._count}"
        self.send({"type": "invoke", "id": inv_id, "function": function,
                   "event": {"request": {"headers": {}, "cookies": {}}} if event is None else event,
                   "context": context if context is not None else {
                       "PATH": f"/{function}", "DOMAIN_NAME": "test.localhost:3000",
                       "SERVICE_SID": "ZS00000000000000000000000000000000",
                       "ENVIRONMENT_SID": "ZE00000000000000000000000000000000"}})
        frames: list[dict[str, Any]] = []
        result = None
        while True:
            frame = self.next_frame(timeout)
            frames.append(frame)
            assert frame.get("id") == inv_id, f"frame for another invocation: {frame}"
            if frame["type"] == "result":
                assert result is None, "two results"
                result = frame
            elif frame["type"] == "done":
                assert result is not None, "done before result"
                return InvokeOutcome(frames, result, frame)
            else:
                assert frame["type"] == "log", frame
                assert frame["level"] in ("debug", "info", "warn", "error")

    def close(self) -> int:
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream:
                    stream.close()


def write_project(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content))


def describe_project(root: Path) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The `functions`/`assets` lists of init, as the engine would compute them."""
    functions = []
    for path in sorted((root / "functions").rglob("*.py")):
        rel = path.relative_to(root / "functions").as_posix()
        name = rel[:-3].replace(".private", "").replace(".protected", "")
        visibility = "private" if ".private." in rel else "protected" if ".protected." in rel else "public"
        functions.append({"name": name, "file": f"functions/{rel}", "url_path": f"/{name}", "visibility": visibility})
    assets = []
    if (root / "assets").is_dir():
        for path in sorted((root / "assets").rglob("*")):
            if path.is_file():
                rel = path.relative_to(root / "assets").as_posix()
                visibility = "private" if ".private." in rel else "public"
                assets.append({"url_path": "/" + rel.replace(".private", ""), "file": f"assets/{rel}",
                               "visibility": visibility})
    return functions, assets
