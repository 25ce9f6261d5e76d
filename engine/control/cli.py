"""`python -m engine accounts …` and `python -m engine db upgrade`: the operator's commands.

They talk to the store directly (not through the API): accounts are what the API's
credentials come from.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from sqlalchemy import select

from engine.config import load_settings
from engine.control import accounts as acc
from engine.control import store as t
from engine.control.shapes import iso
from engine.errors import EngineError


def _store_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="the embedded store's directory (or ENGINE_DATA_DIR)")
    parser.add_argument("--database-url", help="a SQLAlchemy async URL instead (or ENGINE_DATABASE_URL)")
    parser.add_argument("--config", help="settings file (TOML or YAML)")


def add_parsers(sub: Any) -> None:
    accounts = sub.add_parser("accounts", help="create, list, rotate and delete accounts of the control API")
    verbs = accounts.add_subparsers(dest="verb", required=True)
    create = verbs.add_parser("create", help="create an account; prints {account_sid, auth_token} as one JSON line")
    create.add_argument("name")
    update_ = verbs.add_parser("update", help="set the account's quotas (0: back to the engine-wide setting)")
    update_.add_argument("account", metavar="NAME_OR_SID")
    for verb in (create, update_):
        for column, setting in t.QUOTAS.items():
            verb.add_argument(f"--{column.replace('_', '-')}", dest=column, type=int, metavar="N",
                              help=f"this account's own {setting} (default: the engine-wide setting)")
    verbs.add_parser("list", help="one JSON line per account")
    rotate = verbs.add_parser("rotate-token", help="a new auth token (the old one stops working)")
    rotate.add_argument("account", metavar="NAME_OR_SID")
    delete = verbs.add_parser("delete", help="delete the account and everything it owns")
    delete.add_argument("account", metavar="NAME_OR_SID")
    key = verbs.add_parser("create-key", help="an API key SK… for the account; prints {sid, secret}")
    key.add_argument("account", metavar="NAME_OR_SID")
    key.add_argument("--name", default="api key", help="the key's friendly name")
    for verb in (create, update_, rotate, delete, key, verbs.choices["list"]):
        _store_flags(verb)
    db = sub.add_parser("db", help="the control store's schema")
    db_verbs = db.add_subparsers(dest="verb", required=True)
    _store_flags(db_verbs.add_parser("upgrade", help="run the store's migrations up to the newest"))


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings({"data_dir": args.data_dir, "database_url": args.database_url, "config": args.config})
        url = t.database_url(settings.data_dir, settings.database_url)
        return asyncio.run(_run(args, url))
    except (EngineError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


#: The largest quota the store's INTEGER columns hold (PostgreSQL's is 32-bit).
MAX_QUOTA = 2**31 - 1
#: Account and key names at most, in characters (the store's column width).
MAX_NAME_CHARS = 64


def _quota_flags(args: argparse.Namespace) -> dict[str, int | None]:
    values = {column: getattr(args, column, None) for column in t.QUOTAS}
    for column, value in values.items():
        if value is not None and not 0 <= value <= MAX_QUOTA:
            raise LookupError(f"--{column.replace('_', '-')} must be 0 (engine-wide setting) up to {MAX_QUOTA} (got {value})")
    return values


def _name(value: str, what: str) -> str:
    if not value or len(value) > MAX_NAME_CHARS:
        raise LookupError(f"{what} must be 1 to {MAX_NAME_CHARS} characters (got {len(value)})")
    return value


async def _account(conn: Any, ref: str) -> str:
    sid = await acc.find_account(conn, ref)
    if sid is None:
        raise LookupError(f"no account named or with SID {ref!r} (see `python -m engine accounts list`)")
    return sid


async def _run(args: argparse.Namespace, url: str) -> int:
    store = t.Store(url)
    try:
        if args.command == "db":
            await store.prepare(upgrade=True)
            verdict = await store.verdict()
            if verdict.kind == "newer":
                print(f"store at {t.describe(url)} is at schema {verdict.revision}, newer than this engine's "
                      f"{verdict.head} and still compatible with it: nothing to do")
            else:
                print(f"store at {t.describe(url)} is at the newest schema ({verdict.revision})")
            return 0
        await store.prepare()  # the embedded store migrates itself; PostgreSQL must be at this engine's schema
        async with store.begin() as conn:
            if args.verb == "create":
                _name(args.name, "the account name")
                if await acc.find_account(conn, args.name) is not None:
                    raise LookupError(f"an account named {args.name!r} already exists")
                made = await acc.create_account(conn, args.name)
                await acc.set_quotas(conn, made.sid, _quota_flags(args))
                print(json.dumps({"account_sid": made.sid, "auth_token": made.secret}))
            elif args.verb == "update":
                sid = await _account(conn, args.account)
                await acc.set_quotas(conn, sid, _quota_flags(args))
                row = (await conn.execute(select(*[t.accounts.c[c] for c in t.QUOTAS]).where(t.accounts.c.sid == sid))).one()
                print(json.dumps({"account_sid": sid, **dict(row._mapping)}))
            elif args.verb == "list":
                rows = (await conn.execute(select(t.accounts.c.sid, t.accounts.c.friendly_name, t.accounts.c.date_created)
                                           .order_by(t.accounts.c.date_created))).all()
                for sid, name, created in rows:
                    print(json.dumps({"account_sid": sid, "name": name, "date_created": iso(created)}))
            elif args.verb == "rotate-token":
                made = await acc.rotate_token(conn, await _account(conn, args.account))
                print(json.dumps({"account_sid": made.sid, "auth_token": made.secret}))
            elif args.verb == "delete":
                sid = await _account(conn, args.account)
                await acc.delete_account(conn, sid)
                print(json.dumps({"deleted": sid}))
            elif args.verb == "create-key":
                made = await acc.create_key(conn, await _account(conn, args.account), _name(args.name, "--name"))
                print(json.dumps({"sid": made.sid, "secret": made.secret}))
        return 0
    finally:
        await store.close()

