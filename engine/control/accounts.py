"""Accounts and API keys: created by the operator's CLI, hashed in the store, checked per request.

Tokens and key secrets are stored only as argon2id hashes. Verifying one costs tens of
milliseconds of CPU and tens of MiB by design, and a deploy makes dozens of requests, so a
verified (username, sha256(password)) pair is remembered in memory for `credential_cache_s`
(default 30 s) together with the stored hash it matched. Every request still reads the account's
or key's row (one indexed lookup): a token rotated or a credential deleted by the CLI (another
process) stops working at once, because its row or hash no longer matches. Only the argon2 work
is skipped. Failures are never cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.control import store as t
from engine.control.shapes import is_sid, new_sid
from engine.control.watch import announce

_hasher = PasswordHasher()

#: Verified credentials kept at most (the oldest is dropped first): bounds the cache's memory.
CREDENTIAL_CACHE_ENTRIES = 1024


@dataclass(frozen=True)
class NewCredential:
    sid: str
    secret: str


def _new_secret() -> str:
    return secrets.token_hex(16)  # 32 hex characters, as the hosted auth tokens


async def create_account(conn: AsyncConnection, name: str) -> NewCredential:
    token = _new_secret()
    sid = new_sid("AC")
    when = t.now()
    digest = await asyncio.to_thread(_hasher.hash, token)
    await conn.execute(insert(t.accounts).values(sid=sid, friendly_name=name, token_hash=digest, date_created=when, date_updated=when))
    return NewCredential(sid, token)


async def find_account(conn: AsyncConnection, name_or_sid: str) -> str | None:
    column = t.accounts.c.sid if is_sid(name_or_sid, "AC") else t.accounts.c.friendly_name
    return await conn.scalar(select(t.accounts.c.sid).where(column == name_or_sid))


async def rotate_token(conn: AsyncConnection, account_sid: str) -> NewCredential:
    token = _new_secret()
    digest = await asyncio.to_thread(_hasher.hash, token)
    await conn.execute(update(t.accounts).where(t.accounts.c.sid == account_sid).values(token_hash=digest, date_updated=t.now()))
    return NewCredential(account_sid, token)


async def delete_account(conn: AsyncConnection, account_sid: str) -> None:
    """Removes the account and, by cascade, every row it owns."""
    for table in (t.logs, t.deployments, t.variables, t.versions, t.builds, t.entries, t.environments, t.services, t.api_keys):
        await conn.execute(delete(table).where(table.c.account_sid == account_sid))
    await conn.execute(delete(t.accounts).where(t.accounts.c.sid == account_sid))
    await announce(conn)  # every replica withdraws its environments


async def create_key(conn: AsyncConnection, account_sid: str, name: str) -> NewCredential:
    secret = _new_secret()
    sid = new_sid("SK")
    when = t.now()
    digest = await asyncio.to_thread(_hasher.hash, secret)
    await conn.execute(insert(t.api_keys).values(
        sid=sid, account_sid=account_sid, friendly_name=name, secret_hash=digest, date_created=when, date_updated=when,
    ))
    return NewCredential(sid, secret)


async def quota(conn: AsyncConnection, account_sid: str, column: str, settings: Any) -> int:
    """The account's own quota `column` (store.QUOTAS) if set, else the engine-wide setting."""
    own = await conn.scalar(select(t.accounts.c[column]).where(t.accounts.c.sid == account_sid))
    return int(own) if own is not None else int(getattr(settings, t.QUOTAS[column]))


async def set_quotas(conn: AsyncConnection, account_sid: str, values: dict[str, int | None]) -> None:
    """Set (a number) or clear (0: back to the engine-wide setting) per-account quotas."""
    changes = {k: (v or None) for k, v in values.items() if v is not None and k in t.QUOTAS}
    if changes:
        await conn.execute(update(t.accounts).where(t.accounts.c.sid == account_sid).values(**changes, date_updated=t.now()))
        await announce(conn)  # a worker quota applies to every replica's pools


def _verify(digest: str, password: str) -> bool:
    try:
        return _hasher.verify(digest, password)
    except (VerificationError, InvalidHashError):
        return False


class Authenticator:
    """HTTP Basic `AC…:token` or `SK…:secret` → the account SID, or None."""

    def __init__(self, cache_s: float) -> None:
        self.cache_s = cache_s
        # (username, sha256(password)) → (account, the stored hash it was verified against, expiry)
        self._cache: OrderedDict[tuple[str, str], tuple[str, str, float]] = OrderedDict()

    async def account_for(self, conn: AsyncConnection, username: str, password: str) -> str | None:
        if is_sid(username, "AC"):
            query = select(t.accounts.c.sid, t.accounts.c.token_hash).where(t.accounts.c.sid == username)
        elif is_sid(username, "SK"):
            query = select(t.api_keys.c.account_sid, t.api_keys.c.secret_hash).where(t.api_keys.c.sid == username)
        else:
            return None
        row = (await conn.execute(query)).first()  # every request: a deleted or rotated credential fails at once
        if row is None:
            return None
        key = (username, hashlib.sha256(password.encode()).hexdigest())
        cached = self._cache.get(key)
        if cached is not None and cached[1] == row[1] and cached[2] > time.monotonic():
            return row[0]
        if not await asyncio.to_thread(_verify, row[1], password):
            return None
        self._cache[key] = (row[0], row[1], time.monotonic() + self.cache_s)
        while len(self._cache) > CREDENTIAL_CACHE_ENTRIES:
            self._cache.popitem(last=False)
        return row[0]
