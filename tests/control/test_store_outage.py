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
import subprocess
import sys
import time
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
from engine.control.outage import store_unavailable
from engine.metrics import REGISTRY
from tests.conftest import EngineLauncher, RunningEngine
from tests.control.conftest import REPO, Account, error, make_service, ok, start_control_engine, upload, wait_build
from tests.postgres import PrivateCluster, private_pg  # noqa: F401  (a private cluster this module stops and starts)

DROPPED, STORE_UP = "functions_engine_log_lines_dropped_total", "functions_engine_store_up"


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


def test_an_unopenable_sqlite_store_is_unavailable_and_says_so_once(tmp_path: Path) -> None:
    """The embedded store's file replaced by a directory: every use raises StoreUnavailable (503 in
    the API), the gauge is 0, and a working store again is noticed by the next use."""

    async def scenario() -> None:
        url = t.database_url(tmp_path, None)
        await asyncio.to_thread(t.migrate, url)
        store = t.Store(url)
        try:
            await store.ping()
            await store.db.dispose()  # no pooled connection left to the file
            db_file = tmp_path / "engine.db"
            db_file.rename(tmp_path / "engine.db.away")
            db_file.mkdir()
            for _ in range(2):
                with pytest.raises(StoreUnavailable) as caught:
                    async with store.connect() as conn:
                        await conn.execute(select(t.accounts.c.sid))
                assert caught.value.status == 503 and "control store" in caught.value.message
            assert not store.health.up and _sample(STORE_UP) == 0
            db_file.rmdir()
            (tmp_path / "engine.db.away").rename(db_file)
            await store.ping()
            assert store.health.up and _sample(STORE_UP) == 1
        finally:
            await store.close()

    asyncio.run(scenario())


# --- the Logs queue, on real stores ----------------------------------------------------------------


def _sample(name: str, **labels: str) -> float:
    """A series' current value, read from the registry /metrics shows."""
    value = REGISTRY.get_sample_value(name, labels)
    assert value is not None, (name, labels)
    return value


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
            env_full = _sample(DROPPED, reason="environment_full")
            queue_full = _sample(DROPPED, reason="queue_full")

            for n in range(1000):
                _line(sink, noisy.environment_sid, f"flood {n}")
            for n in range(10):
                _line(sink, quiet.environment_sid, f"quiet {n}")
            assert sink.pending == 40
            assert _sample(DROPPED, reason="environment_full") - env_full == 970
            for n in range(40):  # the third takes its 30, the fourth finds the whole queue full at 70
                _line(sink, third.environment_sid, f"third {n}")
                _line(sink, fourth.environment_sid, f"fourth {n}")
            assert sink.pending == 70
            assert _sample(DROPPED, reason="queue_full") - queue_full > 0

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
    """A failed flush keeps its batch: nothing tapped before or during the outage (the server killed
    with SIGKILL, then started again) is lost within the bounds, and each environment's order is kept."""

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
            private_pg.kill()  # a crash: pooled connections die without a goodbye
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


# --- a real engine on the private cluster ----------------------------------------------------------

HELLO_JS = """exports.handler = (context, event, callback) => {
  const lines = Math.min(parseInt(event.lines || '0', 10) || 0, 200);
  for (let i = 0; i < lines; i++) console.log((event.tag || 'line') + ' ' + i);
  callback(null, { greeting: context.GREETING || null, tag: event.tag || null });
};
"""


class PgEngine:
    """An engine whose control store is the private cluster, with the operator CLI on the same URL."""

    def __init__(self, engine: RunningEngine, api: str, database_url: str) -> None:
        self.engine, self.api, self.database_url = engine, api, database_url

    def account(self, name: str) -> Account:
        done = _cli("accounts", "create", name, "--database-url", self.database_url)
        assert done.returncode == 0, done.stderr
        made = json.loads(done.stdout)
        return Account(made["account_sid"], made["auth_token"], self.api)

    def call(self, host: str, path: str = "/hello", timeout: float = 30, client: httpx.Client | None = None) -> httpx.Response:
        return (client or httpx).get(f"{self.engine.url}{path}", headers={"Host": f"{host}:{self.engine.port}"}, timeout=timeout)

    def metric(self, line_start: str) -> str:
        scraped = httpx.get(self.engine.admin_url + "/metrics", timeout=10).text
        return next((line for line in scraped.splitlines() if line.startswith(line_start)), "")

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.engine.logs().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("event") == name:
                found.append(event)
        return found


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, timeout=120, cwd=REPO)


def start_pg_engine(factory: EngineLauncher, data_dir: Path, cluster: PrivateCluster | str, backend: str,
                    config: dict[str, Any]) -> PgEngine:
    """`cluster`: the private cluster's `postgres` database, or the URL of another database on it."""
    url = cluster if isinstance(cluster, str) else cluster.url
    done = _cli("db", "upgrade", "--database-url", url)
    assert done.returncode == 0, done.stderr
    control = start_control_engine(factory, data_dir, backend=backend, config=config, database_url=url)
    engine, api = control.engine, control.api
    return PgEngine(engine, api, url)


def _eventually(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, httpx.HTTPError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _deploy(c: httpx.Client, service: str, environments: list[str]) -> dict[str, str]:
    """One build of HELLO_JS served on each named environment: {unique name: environment SID}."""
    fn = upload(c, service, "function", "/hello", HELLO_JS.encode(), "hello.js")
    build = ok(c.post(f"/Services/{service}/Builds", data={"FunctionVersions": fn["sid"]}), 201)["sid"]
    assert wait_build(c, service, build)["status"] == "completed"
    sids = {}
    for name in environments:
        suffix = {} if name == "production" else {"DomainSuffix": name}  # <service>-<name>.localhost
        env = ok(c.post(f"/Services/{service}/Environments", data={"UniqueName": name, **suffix}), 201)["sid"]
        ok(c.post(f"/Services/{service}/Environments/{env}/Deployments", data={"BuildSid": build}), 201)
        sids[name] = env
    return sids


#: The load's clients run in a process of their own, so the test's own work (pg_ctl, scraping) cannot
#: stall them and pass for the engine's latency. Stops when its stdin closes, or after max_s.
_LOAD_CLIENT = r"""
import json, sys, threading, time
import httpx
url, host, clients, max_s = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
stop, results, deadline = threading.Event(), [], time.monotonic() + max_s
def client():
    with httpx.Client(timeout=30) as http:
        for _ in range(100_000):
            if stop.is_set() or time.monotonic() > deadline:
                return
            sent = time.monotonic()
            try:
                r = http.get(url, headers={"Host": host})
                results.append((time.monotonic() - sent, r.status_code, r.text[:200], sent))
            except httpx.HTTPError as exc:
                results.append((time.monotonic() - sent, 0, repr(exc), sent))
threads = [threading.Thread(target=client) for _ in range(clients)]
for thread in threads:
    thread.start()
sys.stdin.read()
stop.set()
for thread in threads:
    thread.join(60)
json.dump(results, sys.stdout)
"""


class Load:
    """`clients` concurrent clients calling one function on 127.0.0.1 until stopped (bounded by `max_s`)."""

    def __init__(self, engine: PgEngine, host: str, path: str, clients: int = 4, max_s: float = 60) -> None:
        self.results: list[tuple[float, int, str, float]] = []  # (seconds, status, body head, sent)
        self._args = [sys.executable, "-c", _LOAD_CLIENT, f"{engine.engine.url}{path}", f"{host}:{engine.engine.port}",
                      str(clients), str(max_s)]
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Load:
        self._proc = subprocess.Popen(self._args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *_: Any) -> None:
        assert self._proc is not None
        try:
            out, _ = self._proc.communicate("", timeout=90)
            self.results = [tuple(r) for r in json.loads(out)]  # type: ignore[misc]
        finally:
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()

    def summary(self, since: float) -> str:
        """Count, p50, p99 and max latency, and the slowest requests' send times relative to `since`."""
        took = sorted(r[0] for r in self.results)
        slow = sorted(self.results, reverse=True)[:3]
        return (f"{len(took)} requests, p50 {took[len(took) // 2]:.3f}s p99 {took[int(len(took) * 0.99)]:.3f}s "
                f"max {took[-1]:.3f}s; slowest sent at {[round(r[3] - since, 1) for r in slow]}s")


def test_a_frozen_database_cannot_hang_a_control_api_request(private_pg: PrivateCluster, engine_factory: EngineLauncher,
                                                            tmp_path: Path) -> None:
    """A server that accepts TCP but never answers (SIGSTOP): each API request is answered 503 within
    about `database_connect_timeout_s` + `database_command_timeout_s` (1 s each here), not hung."""
    ctl = start_pg_engine(engine_factory, tmp_path / "data", private_pg, "process",
                          {"database_connect_timeout_s": 1.0, "database_command_timeout_s": 1.0})
    account = ctl.account("team-a")
    with account.client() as c:
        ok(c.get("/Services"))
        private_pg.freeze()
        try:
            for _ in range(3):
                started = time.monotonic()
                r = c.get("/Services", timeout=30)
                took = time.monotonic() - started
                error(r, 503, "control store", "retry")
                assert r.headers.get("Retry-After") == "5"
                print(f"API request on a frozen database answered 503 in {took:.2f}s")
                assert took < 6, f"an API request on a frozen database took {took:.1f}s"
            assert httpx.get(ctl.engine.admin_url + "/readyz", timeout=10).status_code == 200
            assert ctl.metric("functions_engine_store_up ") == "functions_engine_store_up 0.0"
        finally:
            private_pg.thaw()
        _eventually(lambda: ok(c.get("/Services")), timeout=20)
    _eventually(lambda: assert_(ctl.metric("functions_engine_store_up ") == "functions_engine_store_up 1.0"), timeout=10)
    assert len(ctl.events("store_down")) == 1 and len(ctl.events("store_up")) == 1


def assert_(condition: bool) -> None:
    assert condition


@pytest.mark.docker
def test_postgres_restart_under_load_fails_no_function_request_and_the_api_answers_503_then_recovers(
    private_pg: PrivateCluster, engine_factory: EngineLauncher, tmp_path: Path, control_docker_backend: str,
    docker_available: None,
) -> None:
    """4 clients for ~15 s while PostgreSQL is stopped for ~5 s: every function request answered 200
    under 4 s (a loose bound: this shared machine's noise); the API 503 in the error shape during, 200 after; /readyz 200 throughout; the
    gauge and the log lines; a variable changed after recovery is served."""
    ctl = start_pg_engine(engine_factory, tmp_path / "data", private_pg, control_docker_backend,
                          {"converge_interval_s": 1.0, "database_connect_timeout_s": 2.0, "database_command_timeout_s": 2.0})
    account = ctl.account("team-a")
    host = "outage.localhost"
    with account.client() as c:
        service = make_service(c, "outage")["sid"]
        env = _deploy(c, service, ["production"])["production"]
        variables = f"/Services/{service}/Environments/{env}/Variables"
        ok(c.post(variables, data={"Key": "GREETING", "Value": "before"}), 201)
        _eventually(lambda: assert_(ctl.call(host).json()["greeting"] == "before"), timeout=30)

        with Load(ctl, host, "/hello") as load:
            time.sleep(3)
            stopped = time.monotonic()
            private_pg.stop()
            outage_ends = time.monotonic() + 5
            answered = []
            while time.monotonic() < outage_ends:
                started = time.monotonic()
                r = c.get(f"/Services/{service}", timeout=30)
                answered.append(time.monotonic() - started)
                error(r, 503, "control store", "retry")
                assert httpx.get(ctl.engine.admin_url + "/readyz", timeout=10).status_code == 200
                time.sleep(0.5)
            assert max(answered) < 5, answered
            assert ctl.metric("functions_engine_store_up ") == "functions_engine_store_up 0.0"
            assert len(ctl.events("store_down")) == 1
            private_pg.start()
            recovered = time.monotonic()
            _eventually(lambda: ok(c.get(f"/Services/{service}")), timeout=20)
            print(f"API answered 200 {time.monotonic() - recovered:.1f}s after PostgreSQL was started again")
            time.sleep(max(0.0, outage_ends + 7 - time.monotonic()))  # the load runs on after recovery
        failed = [r for r in load.results if r[1] != 200]
        assert load.results and not failed, failed[:5]
        slowest = max(r[0] for r in load.results)
        print(f"function requests through the outage (PostgreSQL stopped at 0 s, started at "
              f"{recovered - stopped:.1f}s): {load.summary(stopped)}")
        assert slowest < 4, slowest

        assert ctl.metric("functions_engine_store_up ") == "functions_engine_store_up 1.0"
        assert len(ctl.events("store_down")) == 1 and len(ctl.events("store_up")) == 1
        var = ok(c.get(variables))["variables"][0]
        ok(c.post(f"{variables}/{var['sid']}", data={"Value": "after"}))
        _eventually(lambda: assert_(ctl.call(host).json()["greeting"] == "after"), timeout=30)


@pytest.mark.docker
def test_handler_logging_heavily_into_a_frozen_store_is_not_slowed_and_cannot_crowd_out_a_quiet_environment(
    private_pg: PrivateCluster, engine_factory: EngineLauncher, tmp_path: Path, control_docker_backend: str,
    docker_available: None,
) -> None:
    """While the store accepts connections but never answers (SIGSTOP: the slow case, each write
    waits out the 5 s timeouts), one environment logs 20 lines a request from 4 clients: every
    invocation stays under 4 s (one that waited on the store even once would take 5 or more; the
    rest is this loaded machine's noise, up to about 2 s seen), its lines past
    `max_pending_log_lines_per_environment` (40) are dropped and counted, and a quiet environment's
    lines, like the lines logged just before, reach the Logs API once the store answers again."""
    ctl = start_pg_engine(engine_factory, tmp_path / "data", private_pg, control_docker_backend, {
        "converge_interval_s": 1.0, "database_connect_timeout_s": 5.0, "database_command_timeout_s": 5.0,
        "max_pending_log_lines_per_environment": 40, "max_pending_log_lines": 100,
    })
    account = ctl.account("team-a")
    with account.client() as c:
        service = make_service(c, "chatty")["sid"]
        envs = _deploy(c, service, ["noisy", "quiet"])
        noisy, quiet = "chatty-noisy.localhost", "chatty-quiet.localhost"
        for host in (noisy, quiet):
            _eventually(lambda: assert_(ctl.call(host).status_code == 200), timeout=30)
        dropped_before = ctl.metric('functions_engine_log_lines_dropped_total{reason="environment_full"}')

        assert ctl.call(noisy, "/hello?tag=before&lines=3").status_code == 200
        frozen = time.monotonic()
        private_pg.freeze()
        try:
            with Load(ctl, noisy, "/hello?tag=flood&lines=20") as load:
                for n in range(3):
                    assert ctl.call(quiet, f"/hello?tag=quiet{n}&lines=2", timeout=10).status_code == 200
                    time.sleep(2)
                time.sleep(2)
        finally:
            private_pg.thaw()
        failed = [r for r in load.results if r[1] != 200]
        assert load.results and not failed, failed[:5]
        slowest = max(r[0] for r in load.results)
        print(f"logging requests into a frozen store: {load.summary(frozen)}")
        assert slowest < 4, slowest

        def logged(env: str) -> list[str]:
            return [line["message"] for line in ok(c.get(f"/Services/{service}/Environments/{env}/Logs",
                                                          params={"PageSize": "1000"}))["logs"]]

        def quiet_lines_arrived() -> None:
            got = logged(envs["quiet"])
            for n in range(3):
                assert f"quiet{n} 0" in got and f"quiet{n} 1" in got, got

        _eventually(quiet_lines_arrived, timeout=30)
        noisy_lines = logged(envs["noisy"])
        assert ["before 0", "before 1", "before 2"] == [m for m in noisy_lines if m.startswith("before")]
        assert 0 < len([m for m in noisy_lines if m.startswith("flood")]) <= 40
        dropped_after = ctl.metric('functions_engine_log_lines_dropped_total{reason="environment_full"}')
        assert float(dropped_after.split()[-1]) > float(dropped_before.split()[-1]), (dropped_before, dropped_after)
        assert ctl.metric('functions_engine_log_lines_dropped_total{reason="queue_full"}').endswith(" 0.0")


def _sql(url: str, *statements: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.mark.docker
def test_a_change_written_while_this_engine_could_not_reach_the_store_is_served_by_the_pass_after_recovery(
    private_pg: PrivateCluster, engine_factory: EngineLauncher, tmp_path: Path, control_docker_backend: str,
    docker_available: None,
) -> None:
    """The engine's role is locked out of the database (CONNECTION LIMIT 0, its sessions ended) while
    another writer (as another replica would) changes a variable; when the role is let in again, the
    full pass run on recovery serves the change at once, though `converge_interval_s` is 60 s."""
    _sql(private_pg.url, "CREATE ROLE engine_app LOGIN", "CREATE DATABASE app OWNER engine_app")
    app_url = f"postgresql://engine_app@127.0.0.1:{private_pg.port}/app"
    admin_app_url = f"postgresql://postgres@127.0.0.1:{private_pg.port}/app"
    ctl = start_pg_engine(engine_factory, tmp_path / "data", app_url, control_docker_backend, {"converge_interval_s": 60.0})
    account = ctl.account("team-a")
    host = "elsewhere.localhost"
    with account.client() as c:
        service = make_service(c, "elsewhere")["sid"]
        env = _deploy(c, service, ["production"])["production"]
        ok(c.post(f"/Services/{service}/Environments/{env}/Variables", data={"Key": "GREETING", "Value": "before"}), 201)
        _eventually(lambda: assert_(ctl.call(host).json()["greeting"] == "before"), timeout=30)

        _sql(private_pg.url, "ALTER ROLE engine_app CONNECTION LIMIT 0",
             "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'engine_app'")
        error(c.get(f"/Services/{service}"), 503, "control store", "retry")
        assert ctl.metric("functions_engine_store_up ") == "functions_engine_store_up 0.0"
        _sql(admin_app_url, "UPDATE variables SET value = 'written elsewhere' WHERE key = 'GREETING'")
        time.sleep(2)  # the probe keeps failing meanwhile
        assert ctl.call(host).json()["greeting"] == "before"
        _sql(private_pg.url, "ALTER ROLE engine_app CONNECTION LIMIT -1")
        let_in = time.monotonic()
        _eventually(lambda: assert_(ctl.call(host).json()["greeting"] == "written elsewhere"), timeout=20)
        print(f"a change written during the outage served {time.monotonic() - let_in:.1f}s after the store was back")
        assert time.monotonic() - let_in < 20
    assert len(ctl.events("store_down")) == 1 and len(ctl.events("store_up")) == 1
