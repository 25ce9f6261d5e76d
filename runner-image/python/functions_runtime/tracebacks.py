"""Tracebacks as a handler author wants to read them: without the runner's and importlib's frames."""

from __future__ import annotations

import os
import traceback

_RUNNER_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _internal(filename: str) -> bool:
    return filename.startswith(_RUNNER_DIR) or filename.startswith("<frozen importlib")


def _strip(te: traceback.TracebackException, seen: set[int]) -> None:
    if id(te) in seen:
        return
    seen.add(id(te))
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if not _internal(f.filename)])
    for linked in (te.__cause__, te.__context__):
        if linked is not None:
            _strip(linked, seen)


def format_exception(exc: BaseException) -> str:
    """The traceback as text (just `Name: message` for an exception that was never raised)."""
    te = traceback.TracebackException.from_exception(exc)
    _strip(te, set())
    return "".join(te.format()).rstrip("\n")
