"""Drives the real Python runner over pipes, as the engine does.

`make_runner(files, env=..., limits=...)` writes a project (functions/*.py, assets/*) into a temp
dir, starts `python runner-image/python/runner.py` with a scrubbed environment and a private cwd,
and returns a `RunnerHarness` (runner_harness.py). Teardown fails the test if the runner wrote
anything but protocol frames to its stdout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNNER_DIR = REPO / "runner-image" / "python"
RUNNER = RUNNER_DIR / "runner.py"
#: Another interpreter to run the runner with (e.g. Debian's /usr/bin/python3, as in the runner image);
#: PYTHONPATH is passed through to it so it can find `twilio`.
RUNNER_PYTHON = os.environ.get("RUNNER_TEST_PYTHON")

for _path in (RUNNER_DIR, Path(__file__).resolve().parent):  # the runner package, and runner_harness
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from runner_harness import RunnerHarness, describe_project, write_project  # noqa: E402


class RunnerLauncher:
    """Starts runners for one test (or one module) and checks their stdout stayed clean at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[RunnerHarness] = []

    def __call__(self, files: dict[str, str | bytes], *, env: dict[str, str] | None = None,
                 limits: dict[str, int] | None = None, dev_mode: bool = False, init: bool = True,
                 init_overrides: dict[str, Any] | None = None, python_args: tuple[str, ...] = ()) -> RunnerHarness:
        n = len(self.started)
        root = self.workdir / f"project{n}"
        root.mkdir()
        write_project(root, files)
        functions, assets = describe_project(root)
        full_limits = {"max_log_bytes": 65536, "max_response_bytes": 4194304, "max_frame_bytes": 8388608}
        full_limits.update(limits or {})
        message = {"type": "init", "protocol": 1, "service": "test", "project_root": str(root),
                   "functions": functions, "assets": assets, "env": env or {}, "limits": full_limits,
                   "dev_mode": dev_mode, **(init_overrides or {})}
        cwd = self.workdir / f"cwd{n}"  # a private, empty working directory, as the process backend gives
        cwd.mkdir()
        env_vars = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}  # scrubbed, as the engine starts workers
        if RUNNER_PYTHON and "PYTHONPATH" in os.environ:
            env_vars["PYTHONPATH"] = os.environ["PYTHONPATH"]
        proc = subprocess.Popen(
            [RUNNER_PYTHON or sys.executable, *python_args, str(RUNNER)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env_vars,
        )
        harness = RunnerHarness(proc=proc, project=root, init_message=message,
                                max_frame_bytes=full_limits["max_frame_bytes"])
        harness.start_readers()
        self.started.append(harness)
        if init:
            ready = harness.init()
            assert ready["type"] == "ready", ready
        return harness

    def close(self) -> None:
        for harness in self.started:
            harness.close()
        for harness in self.started:
            assert not harness.bad_lines, f"runner wrote non-protocol lines to stdout: {harness.bad_lines[:5]}"


@pytest.fixture
def make_runner(tmp_path: Path) -> Iterator[Callable[..., RunnerHarness]]:
    """Function-scoped: runners started in a test are stopped when it ends."""
    launcher = RunnerLauncher(tmp_path)
    yield launcher
    launcher.close()


@pytest.fixture(scope="module")
def module_runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RunnerHarness]]:
    """Module-scoped: one runner can serve every row of a table-driven module."""
    launcher = RunnerLauncher(tmp_path_factory.mktemp("runner"))
    yield launcher
    launcher.close()
