"""A project's `requirements.txt`: checked, then pip-installed on the host into a target dir.

Shared by the image builds (wheels for the image's CPython, copied into the service image) and
the process backend (installed for the engine's own Python into a cache dir, on the runner's path).
pip runs on the host, so requirements may only name packages from the configured index.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from engine.errors import ImageBuildError

REQUIREMENTS = "requirements.txt"
ProgressFn = Callable[[str], None]


def requirement_lines(requirements: Path) -> list[str]:
    """The requirement lines; options that send pip to other indexes, URLs or paths are refused.

    A project must not be able to point the host's pip at arbitrary hosts (private-range
    addresses included): only plain names (with versions and markers) are allowed.
    """
    lines = []
    for number, raw in enumerate(requirements.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-") or "://" in line or re.search(r"\s@\s|^[^=<>!~;]*@", line):
            raise ImageBuildError(
                f"{requirements}:{number}: {line!r} is not allowed; requirements.txt may only list package "
                "names with versions (pip options, URLs and local paths are refused)"
            )
        lines.append(line)
    return lines


def pip_install(target: Path, args: list[str], progress: ProgressFn, *, what: str,
                extra: list[str] | None = None) -> None:
    """`pip install --target` on the host; errors name `what` and pip's last error line."""
    cmd = [
        sys.executable, "-m", "pip", "install", "--target", str(target), *(extra or []),
        "--no-compile", "--no-input", "--disable-pip-version-check", "--progress-bar", "off", *args,
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_TARGET", "PIP_PREFIX", "PIP_USER")}
    output: list[str] = []
    try:
        run_streaming(cmd, progress, "pip", env=env, cwd=target.parent, keep=output)
    except subprocess.CalledProcessError as exc:
        errors = [line for line in output if line.startswith("ERROR:")]
        detail = errors[-1] if errors else (output[-1] if output else f"exit code {exc.returncode}")
        raise ImageBuildError(f"installing {what} failed: {detail.removeprefix('ERROR: ')}") from exc


def run_streaming(
    cmd: list[str], progress: ProgressFn, prefix: str, *,
    env: dict[str, str] | None = None, cwd: Path | None = None, keep: list[str] | None = None,
) -> None:
    """Run a command, passing each output line to `progress`; CalledProcessError if it fails."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=env, cwd=cwd, text=True, errors="replace",
    )
    assert proc.stdout is not None
    with proc:
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                if keep is not None:
                    keep.append(line)
                    del keep[:-200]
                progress(f"{prefix}: {line}")
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "functions-engine"


def host_site_packages(project_root: Path, progress: ProgressFn) -> Path | None:
    """The project's requirements installed for this Python, cached by their content; None if none."""
    requirements = project_root / REQUIREMENTS
    if not requirements.is_file():
        return None
    lines = requirement_lines(requirements)
    if not lines:
        return None
    key = hashlib.sha256(("\n".join(lines) + sys.version).encode()).hexdigest()[:16]
    target = cache_root() / "pydeps" / key
    if (target / ".complete").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
    try:
        progress(f"installing {requirements} for the process backend")
        pip_install(staging, lines, progress, what=str(requirements))
        (staging / ".complete").touch()
        try:
            os.replace(staging, target)
        except OSError:
            # Two builds of the same requirements at once (max_parallel_image_builds): the other
            # finished first, and its copy is as good.
            if not (target / ".complete").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
