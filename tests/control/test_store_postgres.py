"""The shared store on a real PostgreSQL server: the packaged migrations, through the operator CLI."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from engine.control import schema, store
from tests.conftest import EngineLauncher, free_port, wait_until_ready, write_toml
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


# --- selecting the store, the schema check, concurrent upgrades ------------------------------


def _cli_env(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI with no ENGINE_* variable but `env`'s."""
    child = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")} | (env or {})
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=120, cwd=REPO, env=child)


def _sql(url: str, *statements: str) -> list[Any]:
    async def run() -> list[Any]:
        conn = await asyncpg.connect(url)
        try:
            return [await conn.fetch(statement) for statement in statements]
        finally:
            await conn.close()

    return asyncio.run(run())


def _password(url: str) -> str:
    password = urlsplit(url).password
    assert password
    return password


def test_the_store_url_is_taken_from_ENGINE_DATABASE_URL_and_from_the_config_file(pg_url: str, tmp_path: Path) -> None:
    done = _cli_env("db", "upgrade", env={"ENGINE_DATABASE_URL": pg_url})
    assert done.returncode == 0, done.stderr
    assert f":{_password(pg_url)}@" not in done.stdout + done.stderr
    config = tmp_path / "engine.toml"
    write_toml(config, {"database_url": pg_url})
    made = _cli_env("accounts", "create", "from-config", "--config", str(config))
    assert made.returncode == 0, made.stderr
    listed = _cli_env("accounts", "list", env={"ENGINE_CONFIG": str(config)})
    assert [json.loads(line)["name"] for line in listed.stdout.splitlines()] == ["from-config"], listed.stderr


def test_two_db_upgrades_started_at_once_take_turns_and_leave_the_schema_at_head_once(pg_url: str) -> None:
    """Kubernetes may run the migration Job and several init containers at once: the advisory lock
    makes them take turns. Held here first, so both are seen waiting on it before either runs."""
    key = schema.MIGRATION_LOCK_KEY

    async def run() -> list[tuple[int, str]]:
        holder = await asyncpg.connect(pg_url)
        procs: list[asyncio.subprocess.Process] = []
        try:
            await holder.execute("SELECT pg_advisory_lock($1)", key)
            env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
            for _ in range(2):
                procs.append(await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "engine", "db", "upgrade", "--database-url", pg_url, cwd=REPO, env=env,
                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE))
            waiting = 0
            for _ in range(600):  # both blocked on the lock: neither migrates while another holds it
                waiting = await holder.fetchval(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid::text = $1", str(key))
                if waiting == 2 or any(p.returncode is not None for p in procs):
                    break
                await asyncio.sleep(0.1)
            assert waiting == 2, [p.returncode for p in procs]
            assert await holder.fetchval("SELECT to_regclass('alembic_version')") is None
        finally:
            await holder.execute("SELECT pg_advisory_unlock($1)", key)
            await holder.close()
        results = []
        for proc in procs:
            out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
            results.append((proc.returncode or 0, (out + err).decode()))
        return results

    results = asyncio.run(run())
    assert [code for code, _ in results] == [0, 0], results
    versions, compat = _sql(pg_url, "SELECT version_num FROM alembic_version", f"SELECT revision FROM {schema.COMPAT_TABLE}")
    assert [row[0] for row in versions] == [schema.head()]
    assert [row[0] for row in compat] == [schema.head()]


def _serve(factory: EngineLauncher, url: str) -> Any:
    return factory(backend="process", args=["--api-port", str(free_port())], env={"ENGINE_DATABASE_URL": url}, wait_ready=False)


def _exit(running: Any, timeout: float = 60) -> tuple[int, str]:
    code = running.proc.wait(timeout=timeout)
    return code, running.logs()


def test_an_engine_refuses_an_empty_or_older_postgres_store_naming_the_command_to_run(pg_url: str, engine_factory: EngineLauncher) -> None:
    code, out = _exit(_serve(engine_factory, pg_url))
    assert code == 2, out
    assert "is empty (no schema)" in out and f"needs {schema.head()}" in out and "python -m engine db upgrade --database-url" in out, out
    assert f":{_password(pg_url)}@" not in out and ":***@" in out, out
    older = schema.revisions()[-2]
    store.migrate(store.normalise_url(pg_url), older)
    code, out = _exit(_serve(engine_factory, pg_url))
    assert code == 2 and f"is at schema {older}; this engine needs {schema.head()}" in out, out
    listed = _cli_env("accounts", "list", "--database-url", pg_url)  # the operator's verbs check the same
    assert listed.returncode == 2 and f"is at schema {older}" in listed.stderr, listed.stderr
    assert _sql(pg_url, "SELECT version_num FROM alembic_version")[0][0][0] == older  # nothing migrated it


def test_an_engine_refuses_a_newer_schema_it_does_not_know_and_runs_on_one_that_says_it_may(pg_url: str, engine_factory: EngineLauncher) -> None:
    assert _cli_env("db", "upgrade", "--database-url", pg_url).returncode == 0
    _sql(pg_url, "UPDATE alembic_version SET version_num = 'f00d'",
         f"UPDATE {schema.COMPAT_TABLE} SET revision = 'f00d', compatible_from = 'f00d'")
    code, out = _exit(_serve(engine_factory, pg_url))
    assert code == 2, out
    assert f"is at schema f00d, which this engine (schema {schema.head()}) does not know (newer engine?)" in out, out
    assert "upgrade the engine or point it at the right database" in out
    upgraded = _cli_env("db", "upgrade", "--database-url", pg_url)  # an older engine's Job cannot touch it either
    assert upgraded.returncode == 2 and "does not know" in upgraded.stderr, upgraded.stderr

    # A rolling upgrade: the newer schema says engines of this head still read and write it correctly.
    _sql(pg_url, f"UPDATE {schema.COMPAT_TABLE} SET compatible_from = '{schema.head()}'")
    running = _serve(engine_factory, pg_url)
    try:
        wait_until_ready(running, 120)
        assert "store_schema_newer" in running.logs()
    finally:
        assert running.stop() == 0, running.logs()
    upgraded = _cli_env("db", "upgrade", "--database-url", pg_url)
    assert upgraded.returncode == 0 and "nothing to do" in upgraded.stdout, upgraded.stderr
    assert _sql(pg_url, "SELECT version_num FROM alembic_version")[0][0][0] == "f00d"


def test_the_embedded_store_migrates_itself_but_refuses_a_newer_schema_it_does_not_know(tmp_path: Path) -> None:
    data = tmp_path / "data"
    made = _cli_env("accounts", "create", "team-a", "--data-dir", str(data))
    assert made.returncode == 0, made.stderr
    db = sqlite3.connect(data / "engine.db")
    try:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(schema.head(),)]
        db.execute("UPDATE alembic_version SET version_num = 'f00d'")
        db.execute(f"UPDATE {schema.COMPAT_TABLE} SET compatible_from = 'f00d'")
        db.commit()
    finally:
        db.close()
    listed = _cli_env("accounts", "list", "--data-dir", str(data))
    assert listed.returncode == 2 and "is at schema f00d, which this engine" in listed.stderr, listed.stderr


def test_an_unreachable_or_misconfigured_store_is_one_clear_line_without_the_password(engine_factory: EngineLauncher) -> None:
    secret = "s3cret-never-printed"
    for url, words in (
        (f"postgresql://someone:{secret}@127.0.0.1:{free_port()}/nothing", "cannot open the control store at"),
        (f"postgresql://engine_test:{secret}@127.0.0.1:5432/postgres", "password authentication failed"),
        (f"mysql://someone:{secret}@127.0.0.1/nothing", "is not a control store URL"),
    ):
        code, out = _exit(_serve(engine_factory, url))
        assert code == 2 and words in out and secret not in out, out
        assert "Traceback" not in out, out
    listed = _cli_env("accounts", "list", "--database-url", url)  # the operator's verbs say the same
    assert listed.returncode == 2 and "is not a control store URL" in listed.stderr and secret not in listed.stderr, listed.stderr


def test_a_quota_or_name_wider_than_the_store_holds_is_refused_by_the_cli_not_the_database(pg_url: str) -> None:
    """PostgreSQL's INTEGER is 32-bit and its VARCHAR(64) strict: the CLI bounds both first."""
    assert _cli_env("db", "upgrade", "--database-url", pg_url).returncode == 0
    too_big = _cli_env("accounts", "create", "big", "--max-build-bytes", str(2**31), "--database-url", pg_url)
    assert too_big.returncode == 2 and "--max-build-bytes must be 0" in too_big.stderr and "Traceback" not in too_big.stderr, too_big.stderr
    too_long = _cli_env("accounts", "create", "n" * 65, "--database-url", pg_url)
    assert too_long.returncode == 2 and "1 to 64 characters" in too_long.stderr, too_long.stderr
    listed = _cli_env("accounts", "list", "--database-url", pg_url)
    assert listed.returncode == 0 and listed.stdout == "", listed.stderr


def test_two_db_upgrades_at_once_on_a_new_embedded_store_both_succeed(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    procs = [subprocess.Popen([sys.executable, "-m", "engine", "db", "upgrade", "--data-dir", data], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    assert [code for code, _ in results] == [0, 0, 0], results
    db = sqlite3.connect(Path(data) / "engine.db")
    try:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(schema.head(),)]
    finally:
        db.close()
