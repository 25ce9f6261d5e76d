"""Loading a Functions project from disk: functions, assets, visibility, `.env`.

Everything a request can reach is enumerated here, once, at start-up; requests are then matched
against this table and never turned into filesystem paths, so `..`, encoded dots, backslashes or
NUL in a URL cannot reach a file outside `assets/`.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from engine.errors import ProjectError
from engine.protocol import Visibility

RUNTIME_BY_SUFFIX = {".py": "python", ".js": "node"}
# The hosted service rejects `#;,?:@+&$()'"` and spaces; we accept exactly this set.
_VALID_PATH = re.compile(r"^[A-Za-z0-9_\-./]+$")
_SKIPPED_DIRS = {"__pycache__", "node_modules", ".git"}


@dataclass(frozen=True)
class FunctionDef:
    name: str  # URL path without the leading "/" (the Runtime.getFunctions() key)
    url_path: str
    file: str  # relative to the project root, with forward slashes
    runtime: str
    visibility: Visibility


@dataclass(frozen=True)
class AssetDef:
    url_path: str
    file: str
    path: Path  # absolute, resolved, inside assets/
    visibility: Visibility
    content_type: str


@dataclass(frozen=True)
class Project:
    name: str
    root: Path
    functions: dict[str, FunctionDef]  # by URL path
    assets: dict[str, AssetDef]  # by URL path; "/" maps to index.html when present
    env: dict[str, str]
    warnings: list[str] = field(default_factory=list)
    content_hash: str = ""

    def runtimes(self) -> list[str]:
        return sorted({f.runtime for f in self.functions.values()})

    def functions_for(self, runtime: str) -> list[FunctionDef]:
        return [f for f in self.functions.values() if f.runtime == runtime]


def split_visibility(stem: str) -> tuple[str, Visibility]:
    """`reply.protected` → (`reply`, protected)."""
    for visibility in ("protected", "private"):
        suffix = f".{visibility}"
        if stem.endswith(suffix):
            return stem[: -len(suffix)], visibility  # type: ignore[return-value]
    return stem, "public"


def _walk(top: Path) -> list[Path]:
    """Regular files under `top`, sorted, not following directory symlinks."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_DIRS and not d.startswith("."))
        found.extend(Path(dirpath) / name for name in sorted(filenames) if not name.startswith("."))
    return found


def _inside(path: Path, top: Path) -> bool:
    try:
        path.resolve(strict=True).relative_to(top.resolve())
        return True
    except (OSError, ValueError):
        return False


def content_type_for(path: str) -> str:
    guessed, _ = mimetypes.guess_type(path, strict=False)
    if guessed is None:
        return "application/octet-stream"
    if guessed.startswith("text/") or guessed in ("application/javascript", "application/json"):
        return f"{guessed}; charset=utf-8"
    return guessed


def load_project(root: Path, name: str) -> Project:
    """Read a project directory; raises ProjectError naming every offending file."""
    root = root.resolve()
    if not root.is_dir():
        raise ProjectError(f"project directory {root} does not exist or is not a directory")
    errors: list[str] = []
    warnings: list[str] = []
    claimed: dict[str, str] = {}  # url path → file that claims it

    def claim(url_path: str, rel: str) -> bool:
        if url_path in claimed:
            errors.append(f"{claimed[url_path]} and {rel} both map to the URL path {url_path}; rename one")
            return False
        claimed[url_path] = rel
        return True

    functions: dict[str, FunctionDef] = {}
    fn_dir = root / "functions"
    if fn_dir.is_dir():
        for path in _walk(fn_dir):
            rel = path.relative_to(root).as_posix()
            runtime = RUNTIME_BY_SUFFIX.get(path.suffix)
            if runtime is None:
                continue  # helper data files next to functions are not functions
            if not _inside(path, fn_dir):
                warnings.append(f"{rel} is a symlink that points outside functions/; ignored")
                continue
            inner = path.relative_to(fn_dir).with_suffix("").as_posix()
            stem, visibility = split_visibility(inner)
            url_path = "/" + stem
            if not _VALID_PATH.match(rel):
                errors.append(f"{rel}: invalid character in path (allowed: letters, digits, '-', '_', '.', '/')")
                continue
            if claim(url_path, rel):
                functions[url_path] = FunctionDef(stem, url_path, rel, runtime, visibility)

    assets: dict[str, AssetDef] = {}
    asset_dir = root / "assets"
    if asset_dir.is_dir():
        for path in _walk(asset_dir):
            rel = path.relative_to(root).as_posix()
            if not _inside(path, asset_dir):
                warnings.append(f"{rel} is a symlink that points outside assets/; not served")
                continue
            inner = path.relative_to(asset_dir)
            stem, visibility = split_visibility(inner.with_suffix("").as_posix())
            url_path = "/" + stem + inner.suffix
            if not _VALID_PATH.match(rel):
                errors.append(f"{rel}: invalid character in path (allowed: letters, digits, '-', '_', '.', '/')")
                continue
            if claim(url_path, rel):
                assets[url_path] = AssetDef(
                    url_path, rel, path.resolve(), visibility, content_type_for(url_path)
                )
        index = assets.get("/index.html")
        if index is not None and claim("/", index.file):
            assets["/"] = index

    if errors:
        raise ProjectError(f"project {root} cannot be loaded:\n  " + "\n  ".join(errors))

    env_file = root / ".env"
    env: dict[str, str] = {}
    if env_file.is_file():
        env = {key: value or "" for key, value in dotenv_values(env_file).items()}

    return Project(name, root, functions, assets, env, warnings, _content_hash(root))


def _content_hash(root: Path) -> str:
    """sha256 over every file's relative path and bytes: the identity of a service build."""
    digest = hashlib.sha256()
    for path in _walk(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError:
            continue
        digest.update(b"\0")
    return digest.hexdigest()
