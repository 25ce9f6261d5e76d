"""The base image: debian:bookworm-slim when there is one, else an equivalent made with debootstrap.

Nothing is pulled unless ENGINE_BASE_PULL=1 (machines with a registry); without one, the host's
Debian mirror feeds `debootstrap --variant=minbase`, the tree is trimmed the way the slim image is,
and `docker import` makes it `engine-base:bookworm`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import docker
import docker.errors

from engine import pydeps
from engine.backends.base import ProgressFn
from engine.errors import ImageBuildError
from engine.images.build import BUILD_LOCK, KIND_LABEL, MANAGED_LABEL, counted, image_id, no_progress, one_line

BASE_TAG = "engine-base:bookworm"
UPSTREAM_BASE = "debian:bookworm-slim"
DEBIAN_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# A registry that cannot be reached must not stall the first build: the pull is abandoned after this.
PULL_TIMEOUT_S = 30.0


def ensure_base_image(client: docker.DockerClient, progress: ProgressFn | None = None, *, tag: str = BASE_TAG) -> str:
    """Make sure `tag` exists: reuse it, else a local debian:bookworm-slim, else pull one (only when
    ENGINE_BASE_PULL=1, for machines with a registry), else debootstrap one. Returns the tag."""
    progress = progress or no_progress
    with BUILD_LOCK:
        if image_id(client, tag):
            progress(f"base image {tag} present")
            return tag
        with counted("base"):
            pull_allowed = os.environ.get("ENGINE_BASE_PULL") == "1"  # no registry traffic unless asked
            if image_id(client, UPSTREAM_BASE) or (pull_allowed and _try_pull(client, UPSTREAM_BASE, progress)):
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
    progress(f"pull failed ({one_line(str(reason))}); building the base image with debootstrap")
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
