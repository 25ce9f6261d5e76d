"""Helpers shared by the docker-only modules (isolation, limits, lifecycle)."""

from __future__ import annotations

import json
import time
from typing import Any


def wait_for(predicate, timeout: float = 10, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


def log_records(engine) -> list[dict]:
    """The engine's JSON log lines, parsed (plain start-up lines skipped)."""
    records = []
    for line in engine.logs().splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                pass
    return records


def engine_id_of(engine) -> str:
    """The engine id its docker backend logged at start-up (the value of its containers' engine label)."""

    def find():
        return next((r["engine_id"] for r in log_records(engine) if r.get("event") == "docker_backend_started"), None)

    return wait_for(find, 30, "the docker_backend_started log line")
