"""Loads function modules by file path, with the globals in place before their code runs.

Modules are loaded with importlib under unique names (never by putting their directory on
sys.path, which would let `functions/json.py` shadow the standard library). A module is cached by
its real path, so `Runtime.require(path)` returns the very module the runner loaded, and a module
required during another module's load (or in a cycle) is loaded once.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import re
import sys
import traceback
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable

from .tracebacks import format_exception


@dataclass(frozen=True)
class LoadError:
    """Why a function cannot run: answered as a 500 `{"message", "name"}` on every invocation."""

    message: str
    name: str


class ModuleLoadError(ImportError):
    """A module failed to load; carries the formatted load error."""

    def __init__(self, error: LoadError) -> None:
        super().__init__(error.message)
        self.error = error


class ModuleLoader:
    """Loads and caches modules by path, injecting `globals_` into each namespace first."""

    def __init__(self, project_root: str, globals_: dict[str, Any], log_error: Callable[[str], None]) -> None:
        self._root = project_root
        self._globals = globals_
        self._log_error = log_error
        self._modules: dict[str, ModuleType] = {}
        self._errors: dict[str, LoadError] = {}
        self._count = 0

    def relative(self, path: str) -> str:
        """The path as the project knows it (`functions/x.py`), for messages."""
        try:
            rel = os.path.relpath(path, self._root)
        except ValueError:
            return path
        return path if rel.startswith("..") else rel.replace(os.sep, "/")

    def load(self, path: str) -> ModuleType:
        """The module for a file, loading it on first use; raises ModuleLoadError if it cannot load."""
        key = os.path.realpath(path)
        if key in self._modules:
            return self._modules[key]
        if key in self._errors:
            raise ModuleLoadError(self._errors[key])
        self._count += 1
        stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
        name = f"_twilio_function_{self._count}_{stem}"
        loader = importlib.machinery.SourceFileLoader(name, key)
        spec = importlib.util.spec_from_file_location(name, key, loader=loader)
        assert spec is not None
        module = importlib.util.module_from_spec(spec)
        module.__dict__.update(self._globals)
        self._modules[key] = module  # before exec: cycles see the partly loaded module, as in JS
        sys.modules[name] = module  # dataclasses, typing and pickle look modules up here
        try:
            loader.exec_module(module)
        except BaseException as exc:  # SystemExit/KeyboardInterrupt at top level are load errors too
            del self._modules[key]
            sys.modules.pop(name, None)
            error = LoadError(describe_load_error(self.relative(key), exc), type(exc).__name__)
            self._errors[key] = error
            self._log_error(error.message + "\n" + format_exception(exc))
            raise ModuleLoadError(error) from exc
        return module


def describe_load_error(rel: str, exc: BaseException) -> str:
    """`functions/broken.py: SyntaxError: invalid syntax (line 3)`: file, error, and where."""
    if isinstance(exc, SyntaxError):
        where = f" (line {exc.lineno})" if exc.lineno else ""
        if exc.filename and os.path.basename(exc.filename) != os.path.basename(rel):
            where = f" ({exc.filename}, line {exc.lineno})"
        return f"{rel}: {type(exc).__name__}: {exc.msg}{where}"
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if os.path.basename(frame.filename) == os.path.basename(rel):
            line = frame.lineno
    where = f" (line {line})" if line else ""
    return f"{rel}: {type(exc).__name__}: {exc}{where}"


def missing_handler_error(rel: str, module: ModuleType) -> LoadError | None:
    """None when the module defines a callable `handler`, else the error every invocation answers."""
    handler = getattr(module, "handler", None)
    if handler is None:
        return LoadError(f"{rel}: the file has no `handler` (define `def handler(context, event, callback):`)",
                         "Error")
    if not callable(handler):
        return LoadError(f"{rel}: `handler` is a {type(handler).__name__}, not a function", "TypeError")
    return None
