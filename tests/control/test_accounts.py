"""Accounts and credentials: the operator CLI, HTTP Basic with tokens and API keys, 401s."""

from __future__ import annotations

import base64
import json

import httpx

from tests.control.conftest import ControlEngine, error, ok


def test_accounts_create_prints_one_json_line_and_list_rotate_delete_work_at_once(control_engine: ControlEngine) -> None:
    done = control_engine.cli("accounts", "create", "team-a")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    made = json.loads(lines[0])
    assert set(made) == {"account_sid", "auth_token"}
    assert made["account_sid"].startswith("AC") and len(made["account_sid"]) == 34
    listed = [json.loads(line) for line in control_engine.cli("accounts", "list").stdout.splitlines()]
    assert [a["name"] for a in listed] == ["team-a"] and listed[0]["account_sid"] == made["account_sid"]
    assert "auth_token" not in listed[0]

    duplicate = control_engine.cli("accounts", "create", "team-a")
    assert duplicate.returncode == 2 and "already exists" in duplicate.stderr

    old = (made["account_sid"], made["auth_token"])
    assert httpx.get(control_engine.api + "/Services", auth=old).status_code == 200  # now in the engine's cache
    rotated = json.loads(control_engine.cli("accounts", "rotate-token", "team-a").stdout)
    error(httpx.get(control_engine.api + "/Services", auth=old), 401)  # at once, cache or not
    assert rotated["account_sid"] == made["account_sid"] and rotated["auth_token"] != made["auth_token"]
    assert httpx.get(control_engine.api + "/Services", auth=(made["account_sid"], rotated["auth_token"])).status_code == 200

    assert control_engine.cli("accounts", "delete", made["account_sid"]).returncode == 0
    error(httpx.get(control_engine.api + "/Services", auth=(made["account_sid"], rotated["auth_token"])), 401)
    assert control_engine.cli("accounts", "list").stdout.strip() == ""
    missing = control_engine.cli("accounts", "delete", "team-a")
    assert missing.returncode == 2 and "no account" in missing.stderr


def test_the_store_keeps_only_hashes_of_tokens_and_secrets(control_engine: ControlEngine) -> None:
    account = control_engine.account("team-a")
    key = json.loads(control_engine.cli("accounts", "create-key", "team-a").stdout)
    raw = (control_engine.data_dir / "engine.db").read_bytes()
    for wal in control_engine.data_dir.glob("engine.db-*"):
        raw += wal.read_bytes()
    assert account.token.encode() not in raw
    assert key["secret"].encode() not in raw
    assert b"$argon2id$" in raw


def test_no_or_wrong_credentials_get_401_in_the_hosted_error_shape(control_engine: ControlEngine) -> None:
    account = control_engine.account("team-a")
    api = control_engine.api
    error(httpx.get(api + "/Services"), 401, "authentication required")
    error(httpx.get(api + "/Services", auth=(account.sid, "0" * 32)), 401, "wrong credentials")
    error(httpx.get(api + "/Services", auth=("AC" + "0" * 32, account.token)), 401, "wrong credentials")
    error(httpx.get(api + "/Services", auth=("admin", account.token)), 401)
    error(httpx.get(api + "/Services", headers={"Authorization": "Basic !!!notbase64"}), 401)
    error(httpx.get(api + "/Services", headers={"Authorization": "Bearer " + account.token}), 401)
    no_colon = base64.b64encode(account.sid.encode()).decode()
    error(httpx.get(api + "/Services", headers={"Authorization": "Basic " + no_colon}), 401)
    # Unknown paths do not reveal anything to the unauthenticated either.
    error(httpx.get(api + "/Nothing/Here"), 401)
    # Writes without credentials change nothing.
    error(httpx.post(api + "/Services", data={"UniqueName": "x", "FriendlyName": "x"}), 401)
    assert ok(httpx.get(api + "/Services", auth=account.auth))["services"] == []


def test_api_keys_authenticate_as_their_account_and_a_wrong_secret_is_401(control_engine: ControlEngine) -> None:
    account = control_engine.account("team-a")
    key = json.loads(control_engine.cli("accounts", "create-key", "team-a", "--name", "ci").stdout)
    assert key["sid"].startswith("SK") and len(key["sid"]) == 34
    created = ok(httpx.post(control_engine.api + "/Services", auth=(key["sid"], key["secret"]),
                            data={"UniqueName": "shop", "FriendlyName": "Shop"}), 201)
    assert created["account_sid"] == account.sid
    assert [s["sid"] for s in ok(httpx.get(control_engine.api + "/Services", auth=account.auth))["services"]] == [created["sid"]]
    error(httpx.get(control_engine.api + "/Services", auth=(key["sid"], account.token)), 401)


def test_db_upgrade_moves_an_older_store_to_the_newest_schema_keeping_its_accounts(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import sqlite3
    import subprocess
    import sys

    from engine.control.store import database_url, migrate
    from tests.control.conftest import REPO

    data = tmp_path / "data"
    migrate(database_url(data, None), "0001")  # the first schema, as an older engine left it
    with sqlite3.connect(data / "engine.db") as db:
        db.execute("INSERT INTO accounts (sid, friendly_name, token_hash, date_created, date_updated) "
                   "VALUES ('AC" + "1" * 32 + "', 'old', 'x', '2026-01-01 00:00:00', '2026-01-01 00:00:00')")
    done = subprocess.run([sys.executable, "-m", "engine", "db", "upgrade", "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(data / "engine.db") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchone() == ("0004",)
        assert db.execute("SELECT friendly_name, max_services, max_workers FROM accounts").fetchall() == [("old", None, None)]
