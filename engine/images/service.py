"""Service build images: a runner image plus one project's code and its declared dependencies.

A project with Python and JS functions has one service image per runner. The tag hashes the
runner image and every file that goes in, so an unchanged project reuses its image. The same hash
is a label on the image, so the same content under another service name (a build, then each
environment it is deployed to; another replica on this daemon) is tagged, not built again.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

import docker
import docker.errors

from engine import npmdeps, pydeps
from engine.backends.base import ProgressFn
from engine.errors import BackendError, ImageBuildError
from engine.images.build import (
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
    repo_name,
    tag_lock,
)

SERVICE_SITE_PACKAGES = "/opt/service/site-packages"
PROJECT_DIR = "/srv/project"

# Never copied into a service image: VCS data, caches, local envs and `.env` files (secrets travel
# only in the `init` message, never in an image).
_SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv", ".pytest_cache", ".mypy_cache"}
_SKIP_FILE = re.compile(r"^(\.env(\..*)?|.*\.py[co]|\.DS_Store)$")
_REQUIREMENTS = "requirements.txt"


#: The full content hash of a service image (runner, platforms, every file), set when it is built.
CONTENT_LABEL = "io.functions-engine.content"


def service_image_content(client: docker.DockerClient, project_root: Path, runner_image: str) -> str:
    """The hash of everything that goes into a service image: the runner image and the project's files."""
    runner_id = image_id(client, runner_image)
    if runner_id is None:
        raise ImageBuildError(f"runner image {runner_image} is missing")
    digest = hashlib.sha256()
    digest.update(f"service\0{runner_id}\0{' '.join(image_platforms())}\0".encode())
    hash_tree(digest, project_files(project_root))
    return digest.hexdigest()


def _tag_for(service: str, content: str) -> str:
    return f"engine-service-{repo_name(service)}:{content[:12]}"


def service_image_tag(client: docker.DockerClient, service: str, project_root: Path, runner_image: str) -> str:
    """The tag of `service`'s build image for the project's current files on `runner_image`."""
    return _tag_for(service, service_image_content(client, project_root, runner_image))


def cached_service_image(
    client: docker.DockerClient, service: str, project_root: Path, runner_image: str, progress: ProgressFn | None = None,
) -> tuple[str | None, str]:
    """(`service`'s image for this content if the daemon has one, else None; the content hash).

    An image of the same content built under another name is tagged for `service` and reused."""
    progress = progress or no_progress
    content = service_image_content(client, project_root, runner_image)
    tag = _tag_for(service, content)
    if image_id(client, tag):
        progress(f"service image {tag} present")
        return tag, content
    try:
        same = client.api.images(filters={"label": f"{CONTENT_LABEL}={content}"}, quiet=True)
        if same:
            repository, _, version = tag.rpartition(":")
            client.api.tag(same[0], repository, version)
            progress(f"service image {tag} present (the same content, built as {same[0][7:19]})")
            return tag, content
    except docker.errors.DockerException as exc:
        raise BackendError(f"cannot look up or tag an image for {tag}: {exc}") from exc
    return None, content


def ensure_service_image(
    client: docker.DockerClient,
    service: str,
    project_root: Path,
    runner_image: str,
    progress: ProgressFn | None = None,
) -> str:
    """Build (or reuse) the image of one service build: runner + code in /srv/project + its dependencies.

    The dependencies are those of the runner's language: requirements.txt on a Python runner, the
    package.json `dependencies` (npm, into /srv/project/node_modules) on a Node runner. A project
    with both kinds of functions gets one image per runner.
    """
    progress = progress or no_progress
    project_root = Path(project_root).resolve()
    found, content = cached_service_image(client, service, project_root, runner_image, progress)
    if found is not None:
        return found
    tag = _tag_for(service, content)
    with tag_lock(content):  # one build per content at a time; other contents build side by side
        found, _ = cached_service_image(client, service, project_root, runner_image, progress)
        if found is not None:  # built (under any name) while this one waited
            return found
        files = project_files(project_root)
        with counted("service"), tempfile.TemporaryDirectory(prefix="engine-service-ctx-") as tmp:
            context = Path(tmp)
            (context / "project").mkdir()
            for rel, src in files:
                copy_readable(src, context / "project" / rel)
            lines = [f"FROM {runner_image}", f"COPY project {PROJECT_DIR}"]
            requirements = project_root / _REQUIREMENTS
            if _image_runtime(client, runner_image) == "node":
                modules = npmdeps.install_dependencies(project_root, context / "npm", progress)
                if modules is not None:
                    normalise_modes(modules)
                    lines.append(f"COPY npm/node_modules {PROJECT_DIR}/node_modules")
            elif requirements.is_file() and pydeps.requirement_lines(requirements):
                progress(f"installing {requirements} for CPython {IMAGE_PYTHON_VERSION}")
                pip_install_for_image(context / "site-packages", ["-r", str(requirements)], progress, what=str(requirements))
                normalise_modes(context / "site-packages")
                lines.append(f"COPY site-packages {SERVICE_SITE_PACKAGES}")
            (context / "Dockerfile").write_text("\n".join(lines) + "\n")
            docker_build(
                client, context, tag, progress,
                labels={MANAGED_LABEL: "true", KIND_LABEL: "service", "io.functions-engine.service": service,
                        CONTENT_LABEL: content},
            )
        return tag


def _image_runtime(client: docker.DockerClient, ref: str) -> str | None:
    """The runner language an image was built for (its `io.functions-engine.runtime` label)."""
    try:
        labels = client.api.inspect_image(ref)["Config"].get("Labels") or {}
    except docker.errors.DockerException as exc:
        raise BackendError(f"cannot inspect image {ref}: {exc}") from exc
    return labels.get("io.functions-engine.runtime")


def project_files(project_root: Path) -> list[tuple[str, Path]]:
    """The files of a project that go into its image, as sorted (relative path, host path) pairs.

    Skips VCS data, caches, local virtualenvs, node_modules and `.env` files, and any symlink that
    leads outside the project (the build must not copy host files into an image).
    """
    root = Path(project_root).resolve()
    if not root.is_dir():
        raise ImageBuildError(f"project directory {root} does not exist")
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and _inside(here / d, root))
        for name in sorted(filenames):
            path = here / name
            if _SKIP_FILE.match(name) or not _inside(path, root):
                continue
            if path.is_file():  # follows in-project symlinks; skips sockets, fifos, dangling links
                found.append((path.relative_to(root).as_posix(), path))
    return sorted(found)


def _inside(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root)
    except OSError:
        return False
