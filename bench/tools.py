"""What the bench needs besides the engine, installed on first use with the ordinary clients.

- `wrk`: must be on PATH (Debian's package); the bench does not build it.
- `twilio-run`: npm-installed into bench/.node (a pinned version), reused while present.
- `py-spy`: pip-installed into the running venv, only when profiling.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from bench.plan import NODE_DIR, PY_SPY_VERSION, TWILIO_RUN_VERSION

INSTALL_TIMEOUT_S = 600
_VENV_BIN = str(Path(sys.executable).parent)


class ToolMissing(RuntimeError):
    """A tool could not be had; the message says what to install."""


def require(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        raise ToolMissing(f"not on PATH: {', '.join(missing)} (Debian: apt-get install wrk docker.io nodejs npm)")


def installed_twilio_run() -> str | None:
    manifest = NODE_DIR / "node_modules" / "twilio-run" / "package.json"
    try:
        return json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def ensure_twilio_run(progress=print) -> str:
    """twilio-run@TWILIO_RUN_VERSION in bench/.node; returns its version."""
    if installed_twilio_run() == TWILIO_RUN_VERSION:
        return TWILIO_RUN_VERSION
    require("npm")
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    manifest = NODE_DIR / "package.json"
    if not manifest.exists():
        manifest.write_text('{"name": "bench-node-tools", "private": true}\n')
    progress(f"installing twilio-run@{TWILIO_RUN_VERSION} into {NODE_DIR} (npm)")
    done = subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", f"twilio-run@{TWILIO_RUN_VERSION}"],
        cwd=NODE_DIR, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
    )
    if done.returncode != 0 or installed_twilio_run() != TWILIO_RUN_VERSION:
        raise ToolMissing(f"npm could not install twilio-run@{TWILIO_RUN_VERSION}: {done.stderr.strip()[-500:]}")
    return TWILIO_RUN_VERSION


def py_spy() -> str:
    """Path of py-spy in this venv, pip-installing the pinned version if needed."""
    path = shutil.which("py-spy", path=_VENV_BIN)
    if path:
        return path
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", f"py-spy=={PY_SPY_VERSION}"],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
    )
    path = shutil.which("py-spy", path=_VENV_BIN)
    if path is None:
        raise ToolMissing(f"pip could not install py-spy=={PY_SPY_VERSION}: {done.stderr.strip()[-500:]}")
    return path
