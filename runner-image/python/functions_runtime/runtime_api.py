"""The `Runtime` global: the service's assets, functions and Sync service."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .context import twilio_client
from .loader import ModuleLoader


class _Subscriptable:
    """`asset["path"]` as well as `asset.path`, like the JS objects."""

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None


@dataclass(frozen=True)
class Asset(_Subscriptable):
    """One asset: `path` is the file on disk; `open()` returns its text."""

    path: str
    url_path: str
    visibility: str

    def open(self) -> str:
        """The file's text (UTF-8, invalid bytes replaced), as JS `open()` returns it."""
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            return handle.read()

    def read_bytes(self) -> bytes:
        """The file's raw bytes (for binary assets, which `open()` would mangle)."""
        with open(self.path, "rb") as handle:
            return handle.read()


@dataclass(frozen=True)
class FunctionInfo(_Subscriptable):
    """One function: `path` is its module file, loadable with `Runtime.require(path)`."""

    path: str
    name: str
    url_path: str
    visibility: str


class Runtime:
    """`Runtime.get_assets()`, `get_functions()`, `require(path)`, `get_sync()` (camelCase aliases too)."""

    def __init__(self, project_root: str, assets: dict[str, Asset], functions: dict[str, FunctionInfo],
                 env: Mapping[str, Any]) -> None:
        self._root = project_root
        self._assets = assets
        self._functions = functions
        self._env = env
        self._loader: ModuleLoader | None = None

    def attach_loader(self, loader: ModuleLoader) -> None:
        self._loader = loader

    def get_assets(self) -> dict[str, Asset]:
        """Every asset, private ones included, keyed by URL path (`/logo.png`)."""
        return dict(self._assets)

    def get_functions(self) -> dict[str, FunctionInfo]:
        """Every function, private ones included, keyed by name (`sms/reply`)."""
        return dict(self._functions)

    def require(self, path: str) -> ModuleType:
        """The module of a function file (absolute, project-relative, or a function name), like JS require()."""
        if self._loader is None:
            raise RuntimeError("Runtime.require() is not available before the service is loaded")
        return self._loader.load(self._resolve(path))

    def get_sync(self, options: Any = None, *, service_sid: str | None = None) -> Any:
        """The Sync service (default: "default") from the service's credentials."""
        sid = service_sid
        if isinstance(options, str):
            sid = sid or options
        elif isinstance(options, Mapping):
            sid = sid or options.get("serviceName") or options.get("service_sid") or options.get("serviceSid")
        client = twilio_client(self._env, "Runtime.get_sync()")
        return client.sync.v1.services(sid or "default")

    getAssets = get_assets
    getFunctions = get_functions
    getSync = get_sync

    def _resolve(self, path: str) -> str:
        path = os.fspath(path)
        if path in self._functions:
            return self._functions[path].path
        candidate = path if os.path.isabs(path) else os.path.join(self._root, path)
        for option in (candidate, candidate + ".py"):
            if os.path.isfile(option):
                return option
        raise ModuleNotFoundError(f"Runtime.require(): no such file {path!r}")

    def __repr__(self) -> str:
        return f"<Runtime functions={sorted(self._functions)} assets={sorted(self._assets)}>"
