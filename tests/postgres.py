"""A real PostgreSQL server for the shared-store tests: its admin URL (from `make test`, else from
`scripts/ensure-postgres`), and a fresh database per test, dropped after.

Without a server these tests fail, never skip: the shared store must be proven on PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

REPO = Path(__file__).resolve().parents[1]
URL_ENV = "ENGINE_TEST_DATABASE_URL"


def admin_url() -> str:
    url = os.environ.get(URL_ENV)
    if url:
        return url
    done = subprocess.run([str(REPO / "scripts" / "ensure-postgres")], capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not done.stdout.strip():
        pytest.fail(f"no PostgreSQL server for the shared-store tests: scripts/ensure-postgres failed "
                    f"({done.returncode}): {done.stderr.strip()[-800:]}; run `make test`, or set {URL_ENV}")
    url = done.stdout.strip().splitlines()[-1]
    os.environ[URL_ENV] = url  # once per session
    return url


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


async def _admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_database(prefix: str = "fe_test") -> tuple[str, str]:
    """A new empty database: (its name, its URL)."""
    admin = admin_url()
    name = f"{prefix}_{secrets.token_hex(6)}"
    asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
    return name, with_database(admin, name)


def drop_database(name: str) -> None:
    asyncio.run(_admin(admin_url(), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test (`postgresql://…`), dropped after it."""
    name, url = create_database()
    try:
        yield url
    finally:
        drop_database(name)
