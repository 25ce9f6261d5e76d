"""The shared store on a real PostgreSQL server: the packaged migrations, through the operator CLI."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.control.conftest import REPO


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=120, cwd=REPO)


def test_db_upgrade_on_an_empty_postgres_database_is_idempotent_and_the_cli_works_on_it(pg_url: str) -> None:
    for _ in range(2):
        done = _cli("db", "upgrade", "--database-url", pg_url)
        assert done.returncode == 0, done.stderr
        assert "newest schema" in done.stdout
    made = _cli("accounts", "create", "team-a", "--database-url", pg_url)
    assert made.returncode == 0, made.stderr
    listed = _cli("accounts", "list", "--database-url", pg_url)
    assert [json.loads(line)["name"] for line in listed.stdout.splitlines()] == ["team-a"]
