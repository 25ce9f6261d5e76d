"""What every image build shares: labels, the build lock and counters, tree hashing, `docker build`.

Blocking, like the rest of `engine.images`: the docker backend calls it through its executor.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import re
import shutil
import stat
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator

import docker
import docker.errors

from engine import pydeps
from engine.backends.base import ProgressFn
from engine.errors import BackendError, ImageBuildError
from engine.metrics import IMAGE_BUILD_SECONDS, IMAGE_BUILDS

MANAGED_LABEL = "io.functions-engine.managed"
KIND_LABEL = "io.functions-engine.kind"

# One read of a build's output stream; an apt step can be silent for a while, not for this long.
BUILD_READ_TIMEOUT_S = 1800

# Debian bookworm's python3 is CPython 3.11: wheels fetched on the host must match it.
IMAGE_PYTHON_VERSION = "3.11"

# The shared base and runner images: one build at a time per process, so two pools asking for the
# same one do not build it twice.
BUILD_LOCK = threading.RLock()
_TAG_LOCKS: dict[str, threading.Lock] = {}
_TAG_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def tag_lock(tag: str) -> Iterator[None]:
    """One build of `tag` at a time (two pools asking for the same service image build it once);
    builds of different tags run side by side."""
    with _TAG_LOCKS_GUARD:
        lock = _TAG_LOCKS.setdefault(tag, threading.Lock())
    with lock:
        yield


def no_progress(line: str) -> None:
    pass


@contextlib.contextmanager
def counted(kind: str) -> Iterator[None]:
    """Count one image build of `kind` (base, runner, service) as built or failed, and time it."""
    started = time.monotonic()
    try:
        yield
    except BaseException:
        IMAGE_BUILDS.labels(kind, "failed").inc()
        raise
    IMAGE_BUILDS.labels(kind, "built").inc()
    IMAGE_BUILD_SECONDS.labels(kind).observe(time.monotonic() - started)


def image_platforms() -> list[str]:
    """pip --platform values for the image: manylinux up to bookworm's glibc 2.36, on the host's arch."""
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine().lower())
    return [f"manylinux_2_{minor}_{arch}" for minor in range(36, 16, -1)] + [f"manylinux2014_{arch}"]


def image_id(client: docker.DockerClient, ref: str) -> str | None:
    try:
        return client.api.inspect_image(ref)["Id"]
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.DockerException as exc:
        raise BackendError(f"cannot inspect image {ref}: {exc}") from exc


def repo_name(service: str) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", service.lower()).strip("-._")
    if not name:
        raise ImageBuildError(f"service name {service!r} cannot be used in an image name")
    return name


def tree_files(root: Path) -> list[tuple[str, Path]]:
    """Every file under `root` (sorted, relative), without bytecode caches."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in ("__pycache__", ".pytest_cache")]
        for name in filenames:
            if name.endswith((".pyc", ".pyo")):
                continue
            path = Path(dirpath) / name
            if path.is_file():
                out.append((path.relative_to(root).as_posix(), path))
    return sorted(out)


def hash_tree(digest: "hashlib._Hash", files: Iterable[tuple[str, Path]]) -> None:
    for rel, path in files:
        executable = os.access(path, os.X_OK)
        digest.update(f"{rel}\0{int(executable)}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)


def copy_readable(src: Path, dest: Path) -> None:
    """Copy one file, world-readable (0644, or 0755 if executable): COPY keeps these modes, owner root."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    dest.chmod(0o755 if os.access(src, os.X_OK) else 0o644)


def normalise_modes(root: Path) -> None:
    if not root.exists():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                mode = path.stat().st_mode
                path.chmod(0o755 if mode & stat.S_IXUSR else 0o644)


def pip_install_for_image(target: Path, args: list[str], progress: ProgressFn, *, what: str) -> None:
    """pip-install wheels for the image's CPython (not the host's) into `target`, on the host."""
    platform_args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", IMAGE_PYTHON_VERSION,
                     *[arg for plat in image_platforms() for arg in ("--platform", plat)]]
    pydeps.pip_install(target, args, progress, what=what, extra=platform_args)


def docker_build(
    client: docker.DockerClient, context: Path, tag: str, progress: ProgressFn, *,
    buildargs: dict[str, str] | None = None, labels: dict[str, str] | None = None,
) -> str:
    """`docker build` a prepared context with the host network; returns the image id."""
    progress(f"building {tag}")
    tail: list[str] = []
    try:
        stream: Iterator[dict] = client.api.build(
            path=str(context), tag=tag, rm=True, forcerm=True, decode=True, network_mode="host",
            buildargs=buildargs, labels=labels, pull=False, timeout=BUILD_READ_TIMEOUT_S,
        )
        for chunk in stream:
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                raise ImageBuildError(f"building {tag} failed: {one_line(detail)}" + _tail_text(tail))
            for line in str(chunk.get("stream") or chunk.get("status") or "").splitlines():
                if line.strip():
                    tail.append(line.rstrip())
                    del tail[:-20]
                    progress(line.rstrip())
    except docker.errors.DockerException as exc:
        raise ImageBuildError(f"building {tag} failed: {exc}" + _tail_text(tail)) from exc
    built = image_id(client, tag)
    if built is None:
        raise ImageBuildError(f"building {tag} produced no image" + _tail_text(tail))
    progress(f"built {tag} ({built[7:19]})")
    return built


def _tail_text(lines: list[str]) -> str:
    return ("\n  last output:\n    " + "\n    ".join(lines[-8:])) if lines else ""


def one_line(text: str) -> str:
    return " ".join(text.split())[:500]
