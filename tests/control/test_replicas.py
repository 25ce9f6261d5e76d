"""Several engine replicas on one PostgreSQL store behave as one runtime: what is changed through one
is served by the others (LISTEN/NOTIFY, with the converge pass as the fallback), a build whose
replica dies is taken over, and one daemon installs a given content's dependencies once.

Real engines (the docker backend with runc where the claim is about containers, the process
backend where only the change feed is at stake), a real PostgreSQL server, real HTTP."""

from __future__ import annotations

import asyncio
import math
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from tests.conftest import EngineLauncher, free_port, wait_until_ready
from tests.control.conftest import REPO, Account, ControlEngine, make_service, ok, upload, wait_build
from tests.docker_helpers import log_records, wait_for

#: The contract: a change made through one replica is served by every other within this.
BOUND_S = 5.0

GREETING_JS = """exports.handler = (context, event, callback) =>
  callback(null, { version: '%s', greeting: context.GREETING || null });
"""
# A build with a dependency: its install takes seconds (long enough to kill a replica in it).
DEPENDENT_JS = """const isNumber = require('is-number');
exports.handler = (context, event, callback) => callback(null, { version: '%s', number: isNumber(5) });
"""
IS_NUMBER = '[{"name":"is-number","version":"7.0.0"}]'


# --- helpers ----------------------------------------------------------------------------------


def db_upgrade(url: str) -> None:
    """What an operator runs before starting replicas on a database (a migration Job)."""
    done = subprocess.run([sys.executable, "-m", "engine", "db", "upgrade", "--database-url", url],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr


def replicas(factory: EngineLauncher, tmp_path: Path, url: str, backend: str, *names: str,
             env: dict[str, str] | None = None, account: str | None = None,
             per: dict[str, dict[str, Any]] | None = None, **config: Any) -> tuple[list[ControlEngine], Account | None]:
    """Engines on the shared store, started side by side (each data dir holds only its build
    directories; `per` adds settings by name), and an `account` made by the operator CLI meanwhile."""
    started = []
    for name in names:
        api_port = free_port()
        settings = {**config, **(per or {}).get(name, {})}
        engine = factory(backend=backend, config=settings or None, env=env, wait_ready=False, args=[
            "--api-port", str(api_port), "--data-dir", str(tmp_path / name), "--database-url", url])
        started.append(ControlEngine(engine, f"http://127.0.0.1:{api_port}/v1", tmp_path / name, url))
    made = started[0].account(account) if account else None
    for control in started:
        wait_until_ready(control.engine, 300)
        wait_for(lambda: _answers(control.api), 10, f"the control API at {control.api}")
    return started, made


def _answers(url: str) -> bool:
    try:
        httpx.get(url + "/Services", timeout=2)
        return True
    except httpx.HTTPError:
        return False


def sql(url: str, query: str, *args: Any) -> list[Any]:
    import asyncpg

    async def run() -> list[Any]:
        conn = await asyncpg.connect(url)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def engine_id(control: ControlEngine) -> str:
    return wait_for(lambda: next((r["engine_id"] for r in log_records(control.engine) if r.get("event") == "isolation"), None),
                    30, "the isolation log line")


def events(control: ControlEngine, name: str) -> list[dict[str, Any]]:
    return [r for r in log_records(control.engine) if r.get("event") == name]


def service_images_built(control: ControlEngine) -> float:
    """Service images this engine built (each is one dependency install, if the build has any)."""
    text = httpx.get(control.engine.admin_url + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("functions_engine_image_builds_total{")
               and 'kind="service"' in line and 'outcome="built"' in line)


def call(control: ControlEngine, host: str) -> dict[str, Any] | None:
    """The function's JSON as this replica serves it at `host`, or None if it serves nothing there."""
    try:
        response = httpx.get(f"{control.engine.url}/version", headers={"Host": f"{host}:{control.engine.port}"}, timeout=10)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def served_within(check: Callable[[], bool], bound_s: float, what: str) -> float:
    """Seconds until `check()` holds; fails past `bound_s`."""
    began = time.monotonic()
    while True:
        if check():
            return time.monotonic() - began
        if time.monotonic() - began > bound_s:
            raise AssertionError(f"{what}: not served within {bound_s:g} s")
        time.sleep(0.05)


def build(c: httpx.Client, service: str, source: str, dependencies: str = '"[]"', wait: bool = True) -> str:
    fn = upload(c, service, "function", "/version", source.encode(), "version.js")
    made = ok(c.post(f"/Services/{service}/Builds", data={
        "FunctionVersions": fn["sid"], "Runtime": "node22", "Dependencies": dependencies}), 201)
    if wait:
        done = wait_build(c, service, made["sid"])
        assert done["status"] == "completed", done
    return made["sid"]


def api(control: ControlEngine, account: Account) -> httpx.Client:
    return httpx.Client(base_url=control.api, auth=account.auth, timeout=60)


def environment(c: httpx.Client, name: str) -> tuple[str, str, str]:
    """A new service with a `dev` environment: (service sid, environment sid, its host)."""
    service = make_service(c, name)["sid"]
    env = ok(c.post(f"/Services/{service}/Environments", data={"UniqueName": "dev", "DomainSuffix": "dev"}), 201)
    return service, env["sid"], env["domain_name"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def terminate_watch(url: str, control: ControlEngine) -> int:
    """Cut a replica's LISTEN connection from the server's side, as a failover or an admin would."""
    rows = sql(url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name = $1",
               f"functions-engine watch {engine_id(control)}")
    return sum(1 for row in rows if row[0])


def descendants(pid: int) -> dict[int, str]:
    """The live descendants of `pid` and their command lines (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: dict[int, str] = {}
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and child not in found:
                try:
                    found[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    found[child] = ""
                frontier.append(child)
    return found


# --- the change feed ------------------------------------------------------------------------------


@pytest.mark.docker
def test_a_change_through_one_replica_is_served_by_the_other_within_5_s(
    engine_factory: EngineLauncher, tmp_path: Path, pg_url: str, control_docker_backend: str, docker_available: None,
) -> None:
    """Deploy, rollback and variables through either replica; the other serves them within 5 s. The
    converge pass runs once a minute here, so only the change feed can be that fast."""
    db_upgrade(pg_url)
    (a, b), account = replicas(engine_factory, tmp_path, pg_url, control_docker_backend, "a", "b", account="team-a",
                               converge_interval_s=60)
    assert account is not None
    with api(a, account) as ca, api(b, account) as cb:
        service, env, host = environment(ca, "shop")
        v1 = build(ca, service, GREETING_JS % "v1")
        v2 = build(ca, service, GREETING_JS % "v2")
        deployments = f"/Services/{service}/Environments/{env}/Deployments"

        ok(ca.post(deployments, data={"BuildSid": v1}), 201)
        served_within(lambda: (call(b, host) or {}).get("version") == "v1", BOUND_S, "deployment of v1 through A, on B")
        ok(ca.post(deployments, data={"BuildSid": v2}), 201)
        served_within(lambda: (call(b, host) or {}).get("version") == "v2", BOUND_S, "deployment of v2 through A, on B")
        ok(cb.post(deployments, data={"BuildSid": v1}), 201)  # the rollback, through the other replica
        assert (call(b, host) or {}).get("version") == "v1"
        served_within(lambda: (call(a, host) or {}).get("version") == "v1", BOUND_S, "rollback to v1 through B, on A")

        variables = f"/Services/{service}/Environments/{env}/Variables"
        var = ok(ca.post(variables, data={"Key": "GREETING", "Value": "hello"}), 201)
        served_within(lambda: (call(b, host) or {}).get("greeting") == "hello", BOUND_S, "variable created through A, on B")
        latencies, from_request = [], []  # from A's answer (the contract); from sending it (A's own roll included)
        for n in range(20):
            value = f"hello-{n}"
            sent = time.monotonic()
            ok(ca.post(f"{variables}/{var['sid']}", data={"Value": value}))
            answered = time.monotonic()
            latencies.append(served_within(lambda: (call(b, host) or {}).get("greeting") == value, BOUND_S,
                                           f"variable change {n} through A, on B"))
            from_request.append(latencies[-1] + answered - sent)
        assert cb.delete(f"{variables}/{var['sid']}").status_code == 204
        served_within(lambda: (call(a, host) or {}) == {"version": "v1", "greeting": None}, BOUND_S,
                      "variable deleted through B, on A")
        for label, values in (("from A's answer", latencies), ("from the request to A", from_request)):
            print(f"\nA-change → B-serves over {len(values)} variable changes, {label}: "
                  f"p50 {statistics.median(values) * 1000:.0f} ms, p99 {percentile(values, 0.99) * 1000:.0f} ms")

        # B served every build from images the daemon had: no second image build, no second install.
        assert service_images_built(b) == 0

        # Environment deleted through A: B stops serving it (404) within the bound as well.
        assert ca.delete(f"/Services/{service}/Environments/{env}").status_code == 204
        served_within(lambda: call(b, host) is None, BOUND_S, "environment deleted through A, on B")


def test_changes_arrive_without_notifications_and_after_the_listen_connection_is_cut_again_and_again(
    engine_factory: EngineLauncher, tmp_path: Path, pg_url: str,
) -> None:
    """B cannot LISTEN (`converge_listen = false`, as behind a transaction-pooling proxy): changes
    made through A still reach it within `converge_interval_s` and a little. A listens, with its
    converge pass a minute away, and the server ends its LISTEN session (pg_terminate_backend, as a
    failover would) right before each change made through B: A reconnects, catches up with a full
    pass and serves every change within 5 s, logging each outage once."""
    interval_s, slack_s = 2.0, 3.0
    db_upgrade(pg_url)
    (a, b), account = replicas(engine_factory, tmp_path, pg_url, "process", "a", "b", account="team-a", per={
        "a": {"converge_interval_s": 60}, "b": {"converge_interval_s": interval_s, "converge_listen": False}})
    assert account is not None
    with api(a, account) as ca, api(b, account) as cb:
        service, env, host = environment(ca, "polled")
        v1 = build(ca, service, GREETING_JS % "v1")
        ok(ca.post(f"/Services/{service}/Environments/{env}/Deployments", data={"BuildSid": v1}), 201)
        served_within(lambda: (call(b, host) or {}).get("version") == "v1", interval_s + slack_s, "deployment, on B")
        variables = f"/Services/{service}/Environments/{env}/Variables"
        var = ok(ca.post(variables, data={"Key": "GREETING", "Value": "first"}), 201)
        served_within(lambda: (call(b, host) or {}).get("greeting") == "first", interval_s + slack_s, "variable, on B")
        for value in ("second", "third"):
            ok(ca.post(f"{variables}/{var['sid']}", data={"Value": value}))
            served_within(lambda: (call(b, host) or {}).get("greeting") == value, interval_s + slack_s, "change, on B")
        assert not events(b, "store_watch_lost") and not events(b, "store_watch_restored")  # it never listened

        for n in range(3):
            wait_for(lambda: terminate_watch(pg_url, a) == 1, 10, "A's LISTEN session to terminate")
            value = f"after-cut-{n}"
            ok(cb.post(f"{variables}/{var['sid']}", data={"Value": value}))
            served_within(lambda: (call(a, host) or {}).get("greeting") == value, BOUND_S, f"change after cut {n}, on A")
    lost, restored = events(a, "store_watch_lost"), events(a, "store_watch_restored")
    assert len(lost) == 3 and len(restored) == 3, (lost, restored)  # once per outage, not once per retry


# --- builds on every replica ---------------------------------------------------------------------


@pytest.mark.docker
def test_a_build_whose_replica_is_killed_mid_install_is_taken_over_and_no_daemon_installs_twice(
    engine_factory: EngineLauncher, tmp_path: Path, pg_url: str, control_docker_backend: str, docker_available: None,
) -> None:
    """SIGKILL replica A while its build installs dependencies: after the lease runs out B takes the
    build over and finishes it; deployed through B, it is served by B and by A restarted, which
    builds nothing again. Then two replicas building the same new content at once install it once
    (the advisory lock), and nothing is left `building`."""
    lease = {"build_lease_s": 6, "build_lease_renew_s": 2, "converge_interval_s": 1}
    db_upgrade(pg_url)
    scratch = tempfile.mkdtemp(prefix="fe-replicas-")  # TMPDIR: what the killed replica leaves there is removed
    (a, b), account = replicas(engine_factory, tmp_path, pg_url, control_docker_backend, "a", "b", env={"TMPDIR": scratch},
                               account="team-a", **lease)
    assert account is not None
    token = secrets.token_hex(4)  # new content: nothing on the daemon has it yet
    orphans: dict[int, str] = {}
    killed_id = engine_id(a)
    try:
        with api(a, account) as ca, api(b, account) as cb:
            service, env, host = environment(ca, "deps")
            sid = build(ca, service, DEPENDENT_JS % f"taken-over-{token}", IS_NUMBER, wait=False)
            assert sql(pg_url, "SELECT owner FROM builds WHERE sid = $1", sid)[0][0] == killed_id

            def installing() -> bool:
                orphans.update({pid: cmd for pid, cmd in descendants(a.engine.proc.pid).items()})
                return any(re.search(r"\bnpm\b", cmd) for cmd in orphans.values())

            wait_for(installing, 120, "replica A to run npm for the build")
            a.engine.proc.kill()  # SIGKILL: no clean-up, no lease released
            a.engine.proc.wait()
            _kill_leftovers(orphans)  # and what ran under it, as when its pod or machine goes
            assert ok(cb.get(f"/Services/{service}/Builds/{sid}/Status"))["status"] == "building"

            done = wait_build(cb, service, sid, timeout=300)
            assert done["status"] == "completed", done
            assert [e["build"] for e in events(b, "build_taken_over")] == [sid]
            assert service_images_built(b) == 1  # the install A did not finish, done once by B

            ok(cb.post(f"/Services/{service}/Environments/{env}/Deployments", data={"BuildSid": sid}), 201)
            assert call(b, host) == {"version": f"taken-over-{token}", "number": True}
            (a,), _ = replicas(engine_factory, tmp_path, pg_url, control_docker_backend, "a", env={"TMPDIR": scratch},
                               **lease)  # restarted on the same store
            served_within(lambda: call(a, host) == {"version": f"taken-over-{token}", "number": True}, BOUND_S,
                          "the deployment, on A restarted")
            assert service_images_built(a) == 0  # the same daemon had the image: nothing installed again

            # Two replicas build the same new content at the same moment: one installs, the other waits
            # on the advisory lock and finds the image.
            same = DEPENDENT_JS % f"twice-{token}"
            with api(a, account) as ca2, ThreadPoolExecutor(2) as pool:
                both = [pool.submit(build, c, service, same, IS_NUMBER) for c in (ca2, cb)]
                assert all(f.result(timeout=300).startswith("ZB") for f in both)  # both completed
            assert service_images_built(a) + service_images_built(b) == 1 + 1  # B's earlier one, and one now

        assert sql(pg_url, "SELECT sid FROM builds WHERE status = 'building'") == []
    finally:
        _kill_leftovers(orphans)
        _remove_containers_of(killed_id)
        for engine in engine_factory.started:  # the engines using it stop first
            engine.stop()
        shutil.rmtree(scratch, ignore_errors=True)


def _kill_leftovers(processes: dict[int, str]) -> None:
    """SIGKILL each process the killed replica started (its npm), by id, if it is still that process."""
    for pid, cmdline in processes.items():
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace") == cmdline:
                os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


def _remove_containers_of(engine: str) -> None:
    import docker

    from engine.backends.docker_reaper import ENGINE_LABEL

    client = docker.from_env()
    try:
        for container in client.containers.list(all=True, filters={"label": f"{ENGINE_LABEL}={engine}"}):
            container.remove(force=True)
    finally:
        client.close()
