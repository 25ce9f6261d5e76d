"""Deployments at runtime (engine/deployment.py): apply, replace, roll back and withdraw services while
the engine serves, with zero failed requests and one switch.

The control API is not what is tested here: each test starts a real `Engine` in its own event loop
on free ports (as `engine.cli.serve` does), calls `apply`/`withdraw` in-process, and drives traffic
over real HTTP from client threads; on the docker backends the workers are real containers, counted
through the Docker SDK by the labels the engine puts on them.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.app import Engine
from engine.config import load_settings
from engine.deployment import LiveDeployment
from engine.errors import ConfigError
from engine.project import load_project
from tests.conftest import PROJECTS, free_port

# The engine runs in the test's own process here, so the warning filters of pytest apply to it: the
# front door keeps its per-request values under plain string keys, which newer aiohttp warns about.
pytestmark = pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning")

ENGINE_LABEL = "io.functions-engine.engine"
BUILD_LABEL = "io.functions-engine.build"
SERVICE_LABEL = "io.functions-engine.service"

VERSION_FN = '''\
import time


def handler(context, event, callback):
    time.sleep(float(event.get("sleep", "0.02")))
    return callback(None, {{"version": "{version}", "greeting": getattr(context, "GREETING", None)}})
'''

# Bounds of the load runs: 127.0.0.1 only, a few clients, a fixed time and count.
LOAD_CLIENTS = 4
LOAD_MAX_REQUESTS_PER_CLIENT = 2000


def write_project(root: Path, version: str, extra: dict[str, str] | None = None) -> Path:
    """A project whose /version function answers `version` (and the GREETING variable)."""
    (root / "functions").mkdir(parents=True, exist_ok=True)
    (root / "assets").mkdir(exist_ok=True)
    (root / "functions" / "version.py").write_text(VERSION_FN.format(version=version))
    (root / "assets" / "build.txt").write_text(version)
    for rel, text in (extra or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def build_id(root: Path) -> str:
    return load_project(root, "x").content_hash[:12]


def deployment(root: Path, *, key: str = "ZE" + "1" * 32, name: str = "shop-dev", hostname: str = "shop-dev.localhost",
               env: dict[str, str] | None = None, build: str = "ZB" + "1" * 32) -> LiveDeployment:
    return LiveDeployment(
        key=key, service_name=name, hostname=hostname, project_root=root, env=env or {},
        service_sid="ZS" + "2" * 32, environment_sid=key, build_sid=build,
    )


def settings_for(backend: str, *projects: str, **extra: Any):
    cli: dict[str, Any] = {
        "projects": list(projects) or None, "host": "127.0.0.1", "port": free_port(), "admin_port": free_port(),
        "backend": "process" if backend == "process" else "docker",
        "runtime": "runsc" if backend == "docker-runsc" else "runc",
        "min_idle": 1, "max_workers": 4, "log_level": "warning",
    }
    cli.update(extra)
    return load_settings(cli, environ={})


def run_engine(backend: str, scenario: Callable[[Engine], Awaitable[None]], *projects: str, **extra: Any) -> None:
    """Start an engine in a fresh event loop, run `scenario`, and always stop it (workers removed)."""

    async def main() -> None:
        engine = Engine(settings_for(backend, *projects, **extra), allow_no_projects=True)
        try:
            await engine.start()
            await scenario(engine)
        finally:
            await engine.stop()

    asyncio.run(main())


# --- docker: containers by label ------------------------------------------------------------------


def containers(engine: Engine, **labels: str) -> list[dict[str, Any]]:
    """The engine's worker containers (any state) with these extra labels, as the list call returns
    them (one call: no inspect of a container that may be going away); [] on the process backend."""
    if engine.settings.backend != "docker":
        return []
    import docker

    client = docker.from_env()
    try:
        wanted = [f"{ENGINE_LABEL}={engine.engine_id}"] + [f"{k}={v}" for k, v in labels.items()]
        return client.api.containers(all=True, filters={"label": wanted})
    finally:
        client.close()


async def containers_async(engine: Engine, **labels: str) -> list[dict[str, Any]]:
    return await asyncio.to_thread(containers, engine, **labels)


# --- HTTP ---------------------------------------------------------------------------------------


def get(engine: Engine, path: str, host: str = "shop-dev.localhost", **params: str) -> httpx.Response:
    url = f"http://127.0.0.1:{engine.settings.port}{path}"
    return httpx.get(url, headers={"Host": host}, params=params, timeout=30)


async def aget(engine: Engine, path: str, host: str = "shop-dev.localhost", **params: str) -> httpx.Response:
    return await asyncio.to_thread(get, engine, path, host, **params)


@dataclass
class Sample:
    started: float
    ended: float
    status: int
    version: str | None
    greeting: str | None
    error: str | None = None


class Load:
    """`LOAD_CLIENTS` threads calling /version in a loop until stopped (bounded in time and count)."""

    def __init__(self, engine: Engine, host: str = "shop-dev.localhost", max_s: float = 40.0) -> None:
        self.url = f"http://127.0.0.1:{engine.settings.port}/version"
        self.host = host
        self.max_s = max_s
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(LOAD_CLIENTS)]

    def _client(self) -> None:
        deadline = time.monotonic() + self.max_s
        with httpx.Client(headers={"Host": self.host}, timeout=30) as client:
            for _ in range(LOAD_MAX_REQUESTS_PER_CLIENT):
                if self._stop.is_set() or time.monotonic() > deadline:
                    return
                started = time.monotonic()
                try:
                    response = client.get(self.url)
                    body = response.json() if response.status_code == 200 else {}
                    sample = Sample(started, time.monotonic(), response.status_code, body.get("version"),
                                    body.get("greeting"), None if response.status_code == 200 else response.text[:300])
                except (httpx.HTTPError, ValueError) as exc:
                    sample = Sample(started, time.monotonic(), 0, None, None, repr(exc))
                with self._lock:
                    self.samples.append(sample)

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    async def stop(self) -> list[Sample]:
        self._stop.set()
        for thread in self._threads:
            await asyncio.to_thread(thread.join, 60)
        with self._lock:
            return sorted(self.samples, key=lambda s: s.started)

    def count(self) -> int:
        with self._lock:
            return len(self.samples)


async def load_around(engine: Engine, action: Callable[[], Awaitable[None]], before_s: float = 5.0,
                      after_s: float = 5.0) -> list[Sample]:
    """Steady load for `before_s`, then `action` (still under load), then `after_s` more."""
    load = Load(engine).start()
    try:
        await asyncio.sleep(before_s)
        assert load.count() > 0, "the load clients got no answer before the switch"
        await action()
        await asyncio.sleep(after_s)
    finally:
        samples = await load.stop()
    return samples


def assert_one_switch(samples: list[Sample], old: str, new: str) -> None:
    """Zero failures; each answer from one build; once any answer of `new` has arrived, every request
    started after it is answered by `new`; ordered by start, the builds run old…old new…new, except
    requests already running at the switch (started before the first `new` answer arrived)."""
    failures = [s for s in samples if s.status != 200]
    assert not failures, f"{len(failures)} of {len(samples)} requests failed, e.g. {failures[:3]}"
    versions = [s.version for s in samples]
    assert set(versions) == {old, new}, f"expected answers from {old} and {new}, got {sorted(set(map(str, versions)))}"
    first_new_answer = min(s.ended for s in samples if s.version == new)
    late_old = [s for s in samples if s.version == old and s.started > first_new_answer]
    assert not late_old, f"{len(late_old)} requests started after the first {new} answer were served by {old}"
    # The only requests that may come out of start order are those in flight at the switch.
    settled = [s.version for s in samples if s.ended < first_new_answer or s.started > first_new_answer]
    switches = sum(1 for a, b in zip(settled, settled[1:]) if a != b)
    assert switches == 1, f"the builds seen (by request start) switch {switches} times"


def latency_ms(samples: list[Sample]) -> dict[str, float]:
    """Median and worst request time, for the report (not asserted: the machine is shared)."""
    times = sorted((s.ended - s.started) * 1000 for s in samples)
    worst = max(samples, key=lambda s: s.ended - s.started)
    first = samples[0].started
    return {"p50": round(times[len(times) // 2], 1), "max": round(times[-1], 1),
            "worst_started_at_s": round(worst.started - first, 1), "worst_build": worst.version,
            "over_500ms": sum(1 for t in times if t > 500)}


# --- tests --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_lazy_apply_cannot_switch_a_served_environment_to_a_cold_build(backend: str, tmp_path: Path) -> None:
    """`apply(lazy=True)` (the control plane's restore and first sight) routes a key not served yet at
    once, its image built in the background; for a key already served it is the warm switch of every
    redeploy: under load, zero failures and one switch, with the new build warm before it."""
    v1 = write_project(tmp_path / "v1", "v1")
    v2 = write_project(tmp_path / "v2", "v2")

    async def scenario(engine: Engine) -> None:
        route = await engine.apply(deployment(v1, build="ZB" + "1" * 32), lazy=True)
        assert route is not None, "a key not served yet is routed lazily"
        assert (await aget(engine, "/version")).json()["version"] == "v1"  # waited for its image
        assert await route.built() is True

        routes: list[object] = []

        async def redeploy() -> None:
            routes.append(await engine.apply(deployment(v2, build="ZB" + "2" * 32), lazy=True))

        samples = await load_around(engine, redeploy)
        assert routes == [None], "a served key must not be switched lazily"
        assert_one_switch(samples, "v1", "v2")
        assert await route.built() is False  # v1 is no longer served: its outcome concerns nobody

    run_engine(backend, scenario)


@pytest.mark.slow
def test_redeploy_and_rollback_under_load_switch_once_without_failures(backend: str, tmp_path: Path) -> None:
    v1 = write_project(tmp_path / "v1", "v1")
    v2 = write_project(tmp_path / "v2", "v2")
    numbers: dict[str, Any] = {}

    async def scenario(engine: Engine) -> None:
        await engine.apply(deployment(v1, build="ZB" + "1" * 32))
        assert (await aget(engine, "/version")).json()["version"] == "v1"
        old = {c["Id"] for c in await containers_async(engine, **{BUILD_LABEL: build_id(v1)})}

        samples = await load_around(engine, lambda: engine.apply(deployment(v2, build="ZB" + "2" * 32)))
        assert_one_switch(samples, "v1", "v2")
        numbers["redeploy_requests"] = len(samples)
        numbers["redeploy_latency_ms"] = latency_ms(samples)
        # Label values stay bounded: the service name, never a SID or a build.
        scraped = (await asyncio.to_thread(httpx.get, f"http://127.0.0.1:{engine.settings.admin_port}/metrics")).text
        assert 'service="shop-dev"' in scraped
        for sid in ("ZE" + "1" * 32, "ZB" + "1" * 32, "ZB" + "2" * 32, "ZS" + "2" * 32, build_id(v1), build_id(v2)):
            assert sid not in scraped
        # apply() returned after the old pools drained: their containers are gone, the new ones are there.
        left = {c["Id"] for c in await containers_async(engine, **{BUILD_LABEL: build_id(v1)})}
        assert not (old & left), "containers of the replaced build are still there"
        if engine.settings.backend == "docker":
            assert not left and old
            assert await containers_async(engine, **{BUILD_LABEL: build_id(v2)})
        assert (await aget(engine, "/build.txt")).text == "v2"

        # Rollback: the older build again, the same way.
        samples = await load_around(engine, lambda: engine.apply(deployment(v1, build="ZB" + "1" * 32)))
        assert_one_switch(samples, "v2", "v1")
        numbers["rollback_requests"] = len(samples)
        numbers["rollback_latency_ms"] = latency_ms(samples)
        assert not await containers_async(engine, **{BUILD_LABEL: build_id(v2)})
        assert (await aget(engine, "/build.txt")).text == "v1"

    run_engine(backend, scenario)
    print(f"requests under load: {numbers}")


def test_request_running_at_the_switch_finishes_on_the_old_build(backend: str, tmp_path: Path) -> None:
    """The attack: a long request on v1 while v2 takes over; it must neither fail nor be moved, its
    workers must stay until it ends, and requests after the switch must see v2 meanwhile."""
    v1 = write_project(tmp_path / "v1", "v1")
    v2 = write_project(tmp_path / "v2", "v2")

    async def scenario(engine: Engine) -> None:
        await engine.apply(deployment(v1))
        slow = asyncio.ensure_future(aget(engine, "/version", sleep="8"))  # under the 10 s time limit
        await asyncio.sleep(1.0)  # the slow request is routed and running on v1
        applying = asyncio.ensure_future(engine.apply(deployment(v2)))
        deadline = time.monotonic() + 120
        while (await aget(engine, "/version")).json()["version"] != "v2":
            assert time.monotonic() < deadline, "v2 never took the traffic"
            await asyncio.sleep(0.1)
        assert not slow.done(), "the slow request ended before the switch; the test proves nothing"
        assert not applying.done(), "apply() returned while a request on the old build was running"
        if engine.settings.backend == "docker":
            assert await containers_async(engine, **{BUILD_LABEL: build_id(v1)}), "old workers removed too early"
        response = await slow
        assert response.status_code == 200, response.text
        assert response.json()["version"] == "v1"
        await asyncio.wait_for(applying, 60)
        assert not await containers_async(engine, **{BUILD_LABEL: build_id(v1)})

    run_engine(backend, scenario)


def test_variable_change_rolls_the_workers_without_failures(backend: str, tmp_path: Path) -> None:
    v1 = write_project(tmp_path / "v1", "v1")

    async def scenario(engine: Engine) -> None:
        await engine.apply(deployment(v1, env={"GREETING": "hello"}))
        assert (await aget(engine, "/version")).json()["greeting"] == "hello"
        before = {c["Id"] for c in await containers_async(engine, **{SERVICE_LABEL: "shop-dev"})}

        async def change() -> None:
            started = time.monotonic()
            await engine.apply(deployment(v1, env={"GREETING": "bonjour"}))
            took = time.monotonic() - started
            print(f"variables-only apply took {took:.2f} s")
            assert took < 60

        load = Load(engine).start()
        try:
            await asyncio.sleep(2.0)
            await change()
            await asyncio.sleep(2.0)
        finally:
            samples = await load.stop()
        failures = [s for s in samples if s.status != 200]
        assert not failures, failures[:3]
        first_new = min(s.ended for s in samples if s.greeting == "bonjour")
        assert not [s for s in samples if s.greeting == "hello" and s.started > first_new]
        assert samples[-1].greeting == "bonjour"
        after = {c["Id"] for c in await containers_async(engine, **{SERVICE_LABEL: "shop-dev"})}
        assert not (before & after), "workers with the old variables are still there"

    run_engine(backend, scenario)


def test_withdraw_answers_404_removes_workers_and_metric_series(backend: str, tmp_path: Path) -> None:
    v1 = write_project(tmp_path / "v1", "v1")

    async def scenario(engine: Engine) -> None:
        await engine.apply(deployment(v1))
        assert (await aget(engine, "/version")).status_code == 200
        metrics_url = f"http://127.0.0.1:{engine.settings.admin_port}/metrics"
        scraped = (await asyncio.to_thread(httpx.get, metrics_url)).text
        assert 'functions_engine_workers{runtime="python",service="shop-dev",state="idle"}' in scraped
        await engine.withdraw("ZE" + "1" * 32)
        for path in ("/version", "/build.txt"):
            assert (await aget(engine, path)).status_code == 404
        assert not await containers_async(engine, **{SERVICE_LABEL: "shop-dev"})
        scraped = (await asyncio.to_thread(httpx.get, metrics_url)).text
        stale = [line for line in scraped.splitlines() if 'service="shop-dev"' in line]
        assert not stale, f"series of the withdrawn service remain: {stale[:5]}"
        await engine.withdraw("ZE" + "1" * 32)  # again: nothing to do

    run_engine(backend, scenario)


def test_broken_deployment_is_refused_naming_the_file_and_the_old_build_keeps_serving(
    backend: str, tmp_path: Path
) -> None:
    v1 = write_project(tmp_path / "v1", "v1")
    clash = write_project(tmp_path / "clash", "clash", {"functions/version.js": "exports.handler = () => {};"})
    bad_package = write_project(tmp_path / "badpkg", "badpkg", {"package.json": "{not json"})
    bad_dep = write_project(tmp_path / "baddep", "baddep",
                            {"package.json": json.dumps({"dependencies": {"x": "file:../../etc"}})})
    syntax = write_project(tmp_path / "syntax", "syntax", {"functions/broken.py": "def handler(:\n"})

    async def scenario(engine: Engine) -> None:
        await engine.apply(deployment(v1))
        for project, file in ((clash, "functions/version.js"), (bad_package, "package.json"),
                              (bad_dep, "package.json")):
            with pytest.raises(ConfigError) as caught:
                await engine.apply(deployment(project))
            assert file in str(caught.value), caught.value
            assert (await aget(engine, "/version")).json()["version"] == "v1"
            builds = {c["Labels"][BUILD_LABEL] for c in await containers_async(engine, **{SERVICE_LABEL: "shop-dev"})}
            assert builds <= {build_id(v1)}, f"workers of the refused build were started: {builds}"
        # A syntax error is the function's problem, answered at invocation (500), not the deployment's.
        await engine.apply(deployment(syntax))
        assert (await aget(engine, "/version")).json()["version"] == "syntax"
        assert (await aget(engine, "/broken")).status_code == 500

    run_engine(backend, scenario)


def test_hostname_clash_with_a_folder_service_is_refused_naming_both(backend: str, tmp_path: Path) -> None:
    v1 = write_project(tmp_path / "v1", "v1")

    async def scenario(engine: Engine) -> None:
        with pytest.raises(ConfigError) as caught:
            await engine.apply(deployment(v1, name="shop-dev", hostname="alpha.localhost"))
        assert "'alpha'" in str(caught.value) and "'shop-dev'" in str(caught.value), caught.value
        with pytest.raises(ConfigError) as caught:  # the name is the label of its metrics and containers
            await engine.apply(deployment(v1, name="alpha", hostname="other.localhost"))
        assert "folder service 'alpha'" in str(caught.value)
        # Beside it, a deployed service and the folder services are both served.
        await engine.apply(deployment(v1))
        assert (await aget(engine, "/version")).json()["version"] == "v1"
        assert (await aget(engine, "/alpha-only", host="alpha.localhost")).text == "only in alpha"
        # Two deployments cannot share a hostname either; the error names both.
        with pytest.raises(ConfigError) as caught:
            await engine.apply(deployment(v1, key="ZE" + "9" * 32, name="shop-stage", hostname="shop-dev.localhost"))
        assert "'shop-stage'" in str(caught.value) and "'shop-dev'" in str(caught.value)
        assert (await aget(engine, "/version")).json()["version"] == "v1"

    run_engine(backend, scenario, f"alpha={PROJECTS / 'svc-alpha'}", f"beta={PROJECTS / 'svc-beta'}")


def test_two_keys_apply_concurrently_and_one_key_keeps_the_last(backend: str, tmp_path: Path) -> None:
    a = write_project(tmp_path / "a", "a")
    b = write_project(tmp_path / "b", "b")
    c = write_project(tmp_path / "c", "c")
    key_a, key_b = "ZE" + "a" * 32, "ZE" + "b" * 32

    async def scenario(engine: Engine) -> None:
        await asyncio.gather(
            engine.apply(deployment(a, key=key_a, name="a-dev", hostname="a-dev.localhost")),
            engine.apply(deployment(b, key=key_b, name="b-dev", hostname="b-dev.localhost")),
        )
        assert (await aget(engine, "/version", host="a-dev.localhost")).json()["version"] == "a"
        assert (await aget(engine, "/version", host="b-dev.localhost")).json()["version"] == "b"
        # Three applies for one key at once: serialised, and the last one is what is served.
        await asyncio.gather(*(engine.apply(deployment(p, key=key_a, name="a-dev", hostname="a-dev.localhost"))
                               for p in (b, c, a, c)))
        assert (await aget(engine, "/version", host="a-dev.localhost")).json()["version"] == "c"
        assert (await aget(engine, "/version", host="b-dev.localhost")).json()["version"] == "b"
        if engine.settings.backend == "docker":
            builds = {c["Labels"][BUILD_LABEL] for c in await containers_async(engine, **{SERVICE_LABEL: "a-dev"})}
            assert builds == {build_id(c)}, builds

    run_engine(backend, scenario)


def test_withdraw_lets_a_running_request_finish(backend: str, tmp_path: Path) -> None:
    v1 = write_project(tmp_path / "v1", "v1")

    async def scenario(engine: Engine) -> None:
        await engine.apply(deployment(v1))
        slow = asyncio.ensure_future(aget(engine, "/version", sleep="3"))
        await asyncio.sleep(1.0)
        withdrawing = asyncio.ensure_future(engine.withdraw("ZE" + "1" * 32))
        deadline = time.monotonic() + 30
        while (await aget(engine, "/version")).status_code != 404:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert not slow.done()
        response = await slow
        assert response.status_code == 200 and response.json()["version"] == "v1"
        await asyncio.wait_for(withdrawing, 60)
        assert not await containers_async(engine, **{SERVICE_LABEL: "shop-dev"})

    run_engine(backend, scenario)


def test_slow_client_cannot_hold_the_old_build_past_the_drain_bound(backend: str, tmp_path: Path) -> None:
    """The attack: a request routed to v1 whose body never finishes arriving. The switch to v2 must not
    wait on it, and the old workers must be gone after the drain bound (time limit + worker wait + 2 s)."""
    v1 = write_project(tmp_path / "v1", "v1")
    v2 = write_project(tmp_path / "v2", "v2")

    async def scenario(engine: Engine) -> None:
        await engine.apply(deployment(v1))
        bound = engine.deployments.drain_bound_s(engine.deployments.live["ZE" + "1" * 32])
        assert bound == 2 + 1 + 2
        reader, writer = await asyncio.open_connection("127.0.0.1", engine.settings.port)
        try:
            writer.write(b"POST /version HTTP/1.1\r\nHost: shop-dev.localhost\r\nContent-Type: text/plain\r\n"
                         b"Content-Length: 100000\r\n\r\npartial")
            await writer.drain()
            await asyncio.sleep(0.5)  # routed to v1, reading a body that does not come
            started = time.monotonic()
            await asyncio.wait_for(engine.apply(deployment(v2)), 120)
            took = time.monotonic() - started
            assert (await aget(engine, "/version")).json()["version"] == "v2"
            assert bound - 0.5 <= took, f"apply returned after {took:.1f} s although a request was still on v1"
            assert not await containers_async(engine, **{BUILD_LABEL: build_id(v1)})
            # The stalled request's build is gone: finishing its body gets an answer, never a v1 one.
            writer.write(b"x" * (100000 - len(b"partial")))
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            assert head.split(b" ")[1] == b"503", head
            body = await asyncio.wait_for(reader.read(2000), 30)
            assert b"replaced or withdrawn" in body, body
        finally:
            writer.close()

    run_engine(backend, scenario, time_limit_s=2, acquire_timeout_s=1)


def test_no_project_is_still_an_error_unless_deployments_can_arrive() -> None:
    settings = settings_for("process")
    with pytest.raises(ConfigError, match="no project to serve"):
        Engine(settings).load()
    engine = Engine(settings, allow_no_projects=True)
    engine.load()
    assert engine.services == []


def test_apply_refuses_names_that_are_not_dns_safe(tmp_path: Path) -> None:
    v1 = write_project(tmp_path / "v1", "v1")

    async def scenario(engine: Engine) -> None:
        for dep in (deployment(v1, name="Shop_Dev"), deployment(v1, hostname="shop dev.localhost"),
                    deployment(v1, hostname="10.0.0.1:80/x")):
            with pytest.raises(ConfigError) as caught:
                await engine.apply(dep)
            assert dep.build_sid in str(caught.value)
        assert (await aget(engine, "/version")).status_code == 404

    run_engine("process", scenario)


def test_cancelled_apply_still_removes_the_old_build(backend: str, tmp_path: Path) -> None:
    """A caller that gives up on apply() while the old build drains (a converger cancelled) must not
    leave the old workers running."""
    v1 = write_project(tmp_path / "v1", "v1")
    v2 = write_project(tmp_path / "v2", "v2")

    async def scenario(engine: Engine) -> None:
        await engine.apply(deployment(v1))
        old = engine.deployments.live["ZE" + "1" * 32]
        slow = asyncio.ensure_future(aget(engine, "/version", sleep="8"))  # under the 10 s time limit
        await asyncio.sleep(1.0)
        applying = asyncio.ensure_future(engine.apply(deployment(v2)))
        while (await aget(engine, "/version")).json()["version"] != "v2":
            await asyncio.sleep(0.1)
        assert not applying.done(), "the old build drained before the cancellation; the test proves nothing"
        applying.cancel()
        with pytest.raises(asyncio.CancelledError):
            await applying
        assert (await slow).json()["version"] == "v1"
        deadline = time.monotonic() + 30
        while any(not p._closed for p in old.pools.values()) or await containers_async(
            engine, **{BUILD_LABEL: build_id(v1)}
        ):
            assert time.monotonic() < deadline, "the old build's workers were left running"
            await asyncio.sleep(0.1)
        assert (await aget(engine, "/version")).json()["version"] == "v2"

    run_engine(backend, scenario)


def test_engine_stop_during_a_drain_removes_both_builds(backend: str, tmp_path: Path) -> None:
    v1 = write_project(tmp_path / "v1", "v1")
    v2 = write_project(tmp_path / "v2", "v2")
    seen: dict[str, Any] = {}

    async def scenario(engine: Engine) -> None:
        await engine.apply(deployment(v1))
        seen["engine"] = engine
        seen["slow"] = asyncio.ensure_future(aget(engine, "/version", sleep="4"))
        await asyncio.sleep(1.0)
        seen["applying"] = asyncio.ensure_future(engine.apply(deployment(v2)))
        while (await aget(engine, "/version")).json()["version"] != "v2":
            await asyncio.sleep(0.1)
        # Leave with the old build still draining: run_engine stops the engine now.

    started = time.monotonic()
    run_engine(backend, scenario)
    assert time.monotonic() - started < 120
    engine = seen["engine"]
    assert not containers(engine), "workers left after the engine stopped mid-drain"


JS_VERSION_FN = '''\
exports.handler = function (context, event, callback) {
  callback(null, { version: "%s", greeting: context.GREETING || null });
};
'''


def test_a_javascript_service_is_deployed_and_replaced_the_same_way(backend: str, tmp_path: Path) -> None:
    js1, js2 = tmp_path / "js1", tmp_path / "js2"
    for root, version in ((js1, "js1"), (js2, "js2")):
        (root / "functions").mkdir(parents=True)
        (root / "functions" / "version.js").write_text(JS_VERSION_FN % version)
        (root / "package.json").write_text(json.dumps({"name": version, "dependencies": {}}))

    async def scenario(engine: Engine) -> None:
        await engine.apply(deployment(js1, env={"GREETING": "hi"}))
        assert (await aget(engine, "/version")).json() == {"version": "js1", "greeting": "hi"}
        await engine.apply(deployment(js2, env={"GREETING": "hi"}))
        assert (await aget(engine, "/version")).json() == {"version": "js2", "greeting": "hi"}
        assert not await containers_async(engine, **{BUILD_LABEL: build_id(js1)})

    run_engine(backend, scenario)
