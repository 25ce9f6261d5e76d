"""The control store going away and coming back (issue 10, points 3 and 4), on a private PostgreSQL
cluster this module may stop, freeze and start (`private_pg`), never the shared server.

What must hold while the database is unreachable: deployed functions keep serving and no
invocation waits on the store; the control API answers 503 in the hosted error shape within its
timeouts; `/readyz` stays 200; `functions_engine_store_up` is 0 and `store_down` is logged once.
When it is back: `store_up` once, the API answers, changes are served, and log lines queued before
and during the outage reach the Logs resource. The Logs queue is bounded per environment, so a
flooding environment cannot take a quiet one's room.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import insert, select

from engine.control import store as t
from engine.control.errors import StoreUnavailable
from engine.control.logsink import LogSink, Served
from engine.control.metrics import LOG_LINES_DROPPED, STORE_UP
from engine.control.outage import store_unavailable
from tests.conftest import EngineLauncher, RunningEngine, free_port
from tests.control.conftest import REPO, Account, error, make_service, ok, upload, wait_build
from tests.postgres import PrivateCluster, private_pg  # noqa: F401  (a private cluster this module stops and starts)


# --- which errors mean "the store is unreachable" ------------------------------------------------


def test_connection_errors_are_store_unavailable_and_statement_errors_are_not() -> None:
    def wrapped(orig: BaseException, cls: type[sa_exc.DBAPIError] = sa_exc.DBAPIError, invalidated: bool = False) -> BaseException:
        return cls("SELECT 1", {}, orig, connection_invalidated=invalidated)

    unreachable: list[BaseException] = [
        ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)"),
        OSError("Multiple exceptions: [Errno 111] Connect call failed, [Errno 99] Cannot assign requested address"),
        asyncio.TimeoutError(), TimeoutError(),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
        wrapped(Exception("server closed the connection"), sa_exc.OperationalError),
        wrapped(Exception("connection is closed"), sa_exc.InterfaceError),
        wrapped(Exception("terminating connection"), invalidated=True),
        sa_exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached, connection timed out"),
    ]
    for exc in unreachable:
        assert store_unavailable(exc), repr(exc)
    chained = RuntimeError("while reading")
    chained.__cause__ = ConnectionResetError()
    assert store_unavailable(chained)

    statement_errors: list[BaseException] = [
        wrapped(asyncpg.exceptions.UniqueViolationError("duplicate key"), sa_exc.IntegrityError),
        wrapped(Exception("syntax error"), sa_exc.ProgrammingError),
        asyncpg.exceptions.UniqueViolationError("duplicate key"),
        FileNotFoundError(2, "No such file or directory", "/var/lib/functions-engine/builds/ZB1"),
        ValueError("bad"), KeyError("ZE1"), LookupError("blob is missing"),
    ]
    for exc in statement_errors:
        assert not store_unavailable(exc), repr(exc)


# --- the Logs queue, on real stores ----------------------------------------------------------------


def _sample(metric: Any, **labels: str) -> float:
    return metric.labels(**labels)._value.get() if labels else metric._value.get()


async def _seed(store: t.Store, environments: int) -> list[Served]:
    """One account and service with `environments` environments, inserted as the API would."""
    now = t.now()
    account, service = "AC" + "0" * 32, "ZS" + "0" * 32
    served = []
    async with store.begin() as conn:
        await conn.execute(insert(t.accounts).values(sid=account, friendly_name="team", token_hash="x",
                                                     date_created=now, date_updated=now))
        await conn.execute(insert(t.services).values(sid=service, account_sid=account, unique_name="shop", friendly_name="Shop",
                                                     include_credentials=True, ui_editable=False, date_created=now, date_updated=now))
        for n in range(environments):
            env = f"ZE{n:032d}"
            await conn.execute(insert(t.environments).values(sid=env, account_sid=account, service_sid=service,
                                                             unique_name=f"env{n}", domain_name=f"shop-env{n}.localhost",
                                                             date_created=now, date_updated=now))
            served.append(Served(account_sid=account, service_sid=service, environment_sid=env,
                                 build_sid="ZB" + "0" * 32, function_sids={"talk": "ZH" + "0" * 32}))
    return served


def _line(sink: LogSink, service: str, message: str) -> None:
    sink.tap({"event": "handler_log", "service": service, "function": "talk", "stream_level": "info", "message": message})


async def _stored(store: t.Store, environment_sid: str) -> list[str]:
    async with store.connect() as conn:
        return list((await conn.scalars(select(t.logs.c.message).where(t.logs.c.environment_sid == environment_sid)
                                        .order_by(t.logs.c.seq))).all())


def test_one_environment_flooding_the_log_queue_cannot_take_another_environments_share(tmp_path: Path) -> None:
    """`max_pending_log_lines_per_environment` (30) holds the flood; the quiet environment keeps every
    line; `max_pending_log_lines` (70) bounds them all; each drop is counted by reason."""

    async def scenario() -> None:
        url = t.database_url(tmp_path, None)
        await asyncio.to_thread(t.migrate, url)
        store = t.Store(url)
        try:
            noisy, quiet, third, fourth = await _seed(store, 4)
            sink = LogSink(store, max_entries=1000, retention_s=3600, max_pending=70, max_pending_per_environment=30)
            for served in (noisy, quiet, third, fourth):
                sink.served[served.environment_sid] = served  # service name → its environment
            env_full = _sample(LOG_LINES_DROPPED, reason="environment_full")
            queue_full = _sample(LOG_LINES_DROPPED, reason="queue_full")

            for n in range(1000):
                _line(sink, noisy.environment_sid, f"flood {n}")
            for n in range(10):
                _line(sink, quiet.environment_sid, f"quiet {n}")
            assert sink.pending == 40
            assert _sample(LOG_LINES_DROPPED, reason="environment_full") - env_full == 970
            for n in range(40):  # the third takes its 30, the fourth finds the whole queue full at 70
                _line(sink, third.environment_sid, f"third {n}")
                _line(sink, fourth.environment_sid, f"fourth {n}")
            assert sink.pending == 70
            assert _sample(LOG_LINES_DROPPED, reason="queue_full") - queue_full > 0

            await sink.flush()
            assert sink.pending == 0
            assert await _stored(store, quiet.environment_sid) == [f"quiet {n}" for n in range(10)]
            assert await _stored(store, noisy.environment_sid) == [f"flood {n}" for n in range(30)]  # oldest kept
            _line(sink, noisy.environment_sid, "after the flush")  # room again once written
            await sink.flush()
            assert (await _stored(store, noisy.environment_sid))[-1] == "after the flush"
        finally:
            await store.close()

    asyncio.run(scenario())


def test_log_lines_queued_before_and_during_a_store_outage_reach_the_store_when_it_is_back(private_pg: PrivateCluster) -> None:
    """A failed flush keeps its batch: nothing tapped before or during the outage is lost (within the
    bounds), and the order of each environment's lines is kept."""

    async def scenario() -> None:
        url = t.normalise_url(private_pg.url)
        await asyncio.to_thread(t.migrate, url)
        store = t.Store(url, connect_timeout_s=2, command_timeout_s=2)
        try:
            (served,) = await _seed(store, 1)
            sink = LogSink(store, max_entries=1000, retention_s=3600)
            sink.served["shop"] = served
            _line(sink, "shop", "written before")
            await sink.flush()
            _line(sink, "shop", "queued before the outage")
            private_pg.stop()
            _line(sink, "shop", "during the outage")
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await sink.flush()
            assert time.monotonic() - started < 10
            assert sink.pending == 2 and not store.health.up and _sample(STORE_UP) == 0
            _line(sink, "shop", "still during")
            with pytest.raises(StoreUnavailable):
                await sink.flush()
            private_pg.start()
            await sink.flush()  # a pooled connection from before the restart is pinged and replaced
            assert store.health.up and _sample(STORE_UP) == 1
            assert sink.pending == 0
            assert await _stored(store, served.environment_sid) == [
                "written before", "queued before the outage", "during the outage", "still during"]
        finally:
            await store.close()

    asyncio.run(scenario())
