"""Both runners, driven the same way over the worker protocol (docs/protocol.md).

`conformant_runner(files)` is parametrised by language: it writes the project (each case gives a
handler per language, `{"python": ..., "node": ...}`), starts that runner as a child process in a
session of its own (as the process backend does, so it can be killed as a group like the engine
kills a worker), sends `init` and returns a `RunnerHarness` (tests/runner/runner_harness.py) past
`ready`. Teardown kills the whole session and fails the test if the runner wrote anything but
protocol frames to its stdout.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
PYTHON_RUNNER = REPO / "runner-image" / "python" / "runner.py"
NODE_DIR = REPO / "runner-image" / "node"
NODE_RUNNER = NODE_DIR / "runner.js"
LANGUAGES = ("python", "node")
EXTENSION = {"python": ".py", "node": ".js"}
DEFAULT_LIMITS = {"max_log_bytes": 65536, "max_response_bytes": 4194304, "max_frame_bytes": 8388608}

_HARNESS_DIR = REPO / "tests" / "runner"
if str(_HARNESS_DIR) not in sys.path:
    sys.path.insert(0, str(_HARNESS_DIR))

from runner_harness import RunnerHarness  # noqa: E402


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("`node` not found on PATH: the runner conformance tests need Node.js 20 or newer")
    if not (NODE_DIR / "node_modules" / "twilio" / "package.json").is_file():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("runner-image/node/node_modules is missing and `npm` is not on PATH to install it")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=600,
                       stdout=subprocess.DEVNULL)
    return node


def _command(language: str) -> list[str]:
    if language == "python":
        return [sys.executable, str(PYTHON_RUNNER)]
    return [_node(), str(NODE_RUNNER)]


def kill_session(harness: RunnerHarness) -> None:
    """What the engine does to a worker it replaces: SIGKILL the runner's whole process group."""
    try:
        os.killpg(harness.proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class Launcher:
    def __init__(self, language: str, workdir: Path) -> None:
        self.language = language
        self.workdir = workdir
        self.started: list[RunnerHarness] = []

    def __call__(self, handlers: dict[str, dict[str, str]], *, limits: dict[str, int] | None = None,
                 init: bool = True) -> RunnerHarness:
        """`handlers`: function name -> {"python": source, "node": source}."""
        n = len(self.started)
        root = self.workdir / f"project{n}"
        functions = []
        for name, sources in handlers.items():
            rel = f"functions/{name}{EXTENSION[self.language]}"
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(sources[self.language]).lstrip())
            functions.append({"name": name, "file": rel, "url_path": f"/{name}", "visibility": "public"})
        full_limits = {**DEFAULT_LIMITS, **(limits or {})}
        message: dict[str, Any] = {"type": "init", "protocol": 1, "service": "conformance", "project_root": str(root),
                                   "functions": functions, "assets": [], "env": {}, "limits": full_limits,
                                   "dev_mode": False}
        cwd = self.workdir / f"cwd{n}"
        cwd.mkdir()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "TMPDIR": str(cwd)}
        proc = subprocess.Popen(_command(self.language), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=cwd, env=env, start_new_session=True)
        harness = RunnerHarness(proc=proc, project=root, init_message=message,
                                max_frame_bytes=full_limits["max_frame_bytes"])
        harness.start_readers()
        self.started.append(harness)
        if init:
            ready = harness.init()
            assert ready["type"] == "ready", (ready, bytes(harness.stderr)[-2000:])
        return harness

    def close(self) -> None:
        for harness in self.started:
            kill_session(harness)
            harness.close()
        for harness in self.started:
            assert not harness.bad_lines, f"runner wrote non-protocol lines to stdout: {harness.bad_lines[:5]}"


@pytest.fixture(params=LANGUAGES)
def language(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def conformant_runner(language: str, tmp_path: Path) -> Iterator[Callable[..., RunnerHarness]]:
    launcher = Launcher(language, tmp_path)
    yield launcher
    launcher.close()
