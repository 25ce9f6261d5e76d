"""`store_url`: the control store on each database it runs on, the embedded SQLite file and a fresh
PostgreSQL database (`tests/postgres.py`). Import it into a test module to run it on both."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.control import store as t


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store's URL as the engine builds it from `--data-dir` or `--database-url`."""
    if request.param == "sqlite":
        return t.database_url(tmp_path / "data", None)
    return t.database_url(None, request.getfixturevalue("pg_url"))
