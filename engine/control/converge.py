"""The converger: turns store state (which build each environment serves, its variables) into
routes and pools through the data plane's public surface, `Engine.apply` and `Engine.withdraw`.

One lock per environment orders its changes (a deployment and a variable change never race).
Deployments are applied before the store records them (under the same lock), so a build the
engine refuses changes nothing; variable changes are recorded first and then roll the
environment's workers. A background pass every `converge_interval_s` compares the store with
what this engine serves and closes the gap (restarts, the operator's CLI, other replicas), and
takes over builds whose replica is gone. Between passes, what other replicas announce
(engine/control/watch.py) is converged at once: an environment's SID converges that environment,
`*` runs a full pass.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import insert, select

from engine.control import metrics
from engine.control import store as t
from engine.control.errors import ApiError, BadRequest, Conflict, StoreUnavailable
from engine.control.lazybuilds import LazyBuilds
from engine.control.logsink import LogSink, Served
from engine.control.shapes import new_sid
from engine.errors import EngineError

log = structlog.get_logger("engine.control")

#: After the first announcement, how long to wait for more before converging: a burst (a deploy
#: client setting ten variables) becomes one pass per environment.
NOTIFY_DEBOUNCE_S = 0.02
EVERYTHING = "*"  # engine.control.watch.EVERYTHING


class NotSupported(ApiError):
    status, code = 501, 20501


def _digest(env: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(sorted(env.items())).encode()).hexdigest()


def service_label(service_unique_name: str, environment_unique_name: str) -> str:
    """`<service>-<environment>`, DNS-safe and at most 63 characters: a bounded label and metric value."""
    label = re.sub(r"[^a-z0-9-]+", "-", f"{service_unique_name}-{environment_unique_name}".lower()).strip("-")
    return label[:63].rstrip("-") or "service"


class Converger:
    def __init__(self, store: t.Store, engine: Any, builder: Any, sink: LogSink | None = None) -> None:
        self.store = store
        self.engine = engine
        self.builder = builder
        self.sink = sink
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.applied: dict[str, tuple[str, str]] = {}  # environment → (build, variables digest) being served
        self._refused: dict[str, tuple[str, str]] = {}  # environment → the state the engine refused
        self._task: asyncio.Task[None] | None = None
        self._pending: set[str] = set()  # announced since the last pass: environment SIDs, or "*"
        self._wake = asyncio.Event()
        self._lazy = LazyBuilds(self._lazy_build_failed)  # environments routed before their image was built

    def _can_apply(self) -> bool:
        return callable(getattr(self.engine, "apply", None)) and callable(getattr(self.engine, "withdraw", None))

    async def live(self, environment_sid: str, build_sid: str) -> Any:
        """The LiveDeployment the engine should serve for this environment and build."""
        from engine.deployment import LiveDeployment  # the data plane's shape (engine/deployment.py)

        async with self.store.connect() as conn:
            env = (await conn.execute(select(t.environments).where(t.environments.c.sid == environment_sid))).first()
            if env is None:
                raise LookupError(f"environment {environment_sid} is gone")
            service = (await conn.execute(select(t.services).where(t.services.c.sid == env.service_sid))).first()
            max_workers = await conn.scalar(select(t.accounts.c.max_workers).where(t.accounts.c.sid == env.account_sid))
            variables = (await conn.execute(select(t.variables.c.key, t.variables.c.value)
                                            .where(t.variables.c.environment_sid == environment_sid))).all()
            held = json.loads(await conn.scalar(select(t.builds.c.function_versions).where(t.builds.c.sid == build_sid)) or "[]")
            functions = (await conn.execute(select(t.versions.c.path, t.versions.c.entry_sid)
                                            .where(t.versions.c.sid.in_(held)))).all() if held else []
        root: Path = await self.builder.ensure_project(build_sid)
        name = service_label(service.unique_name, env.unique_name)
        if self.sink is not None:  # from now on its handler lines are filed under this environment
            self.sink.served[name] = Served(
                account_sid=env.account_sid, service_sid=service.sid, environment_sid=env.sid, build_sid=build_sid,
                function_sids={path.lstrip("/"): entry for path, entry in functions},
            )
        return LiveDeployment(
            key=env.sid, service_name=name,
            hostname=env.domain_name, project_root=root, env={k: v for k, v in variables},
            service_sid=service.sid, environment_sid=env.sid, build_sid=build_sid,
            account_sid=env.account_sid, max_workers_per_account=max_workers,
        )

    async def deploy(self, environment_sid: str, build_sid: str, record: Callable[[], Awaitable[None]]) -> None:
        """Serve `build_sid` on the environment (warm first, then switch), then `record` it in the store,
        both under the environment's lock; 400 if the engine refuses the build (then nothing is recorded)."""
        if not self._can_apply():
            raise NotSupported("this engine cannot switch deployments at run time (no Engine.apply); "
                               "the deployment was not recorded")
        async with self._locks[environment_sid]:
            dep = await self.live(environment_sid, build_sid)
            try:
                await self.engine.apply(dep)
            except EngineError as exc:
                metrics.DEPLOYMENTS.labels("refused").inc()
                await self.log(environment_sid, "error", f"deployment of build {build_sid} refused: {exc}", build_sid)
                if type(exc).__name__ == "NameClash":  # engine.deployment.NameClash: its host or name is taken
                    raise Conflict(f"build {build_sid} cannot be served: {exc}") from None
                raise BadRequest(f"build {build_sid} cannot be served: {exc}") from None
            try:
                await record()
            except Exception:  # e.g. the store went away: serving a build it does not record, so the
                self.applied.pop(environment_sid, None)  # next pass puts back what the store says
                raise
            self.applied[environment_sid] = (build_sid, _digest(dep.env))
        metrics.DEPLOYMENTS.labels("applied").inc()
        await self.log(environment_sid, "info", f"now serving build {build_sid}", build_sid)

    async def environment_changed(self, environment_sid: str) -> None:
        """Variables changed: roll the environment's workers with the new values (if it serves a build)."""
        if self._can_apply():
            await self._converge_one(environment_sid)

    async def _converge_one(self, environment_sid: str) -> None:
        """Make the engine serve what the store says this environment serves, with its variables."""
        async with self._locks[environment_sid]:
            async with self.store.connect() as conn:
                build_sid = await conn.scalar(select(t.environments.c.build_sid).where(t.environments.c.sid == environment_sid))
            if build_sid is None:
                return
            try:
                dep = await self.live(environment_sid, build_sid)
            except LookupError:
                return  # deleted meanwhile: the next pass withdraws it
            want = (build_sid, _digest(dep.env))
            if self.applied.get(environment_sid) == want:
                return
            try:
                # Lazily: an environment this engine does not serve yet (restore, a replica's first
                # sight) is routed at once and built in the background; one it serves is rolled warm.
                route = await self.engine.apply(dep, lazy=True)
            except EngineError as exc:
                metrics.DEPLOYMENTS.labels("refused").inc()
                self._refused[environment_sid] = want  # not retried until the store says something else
                log.error("converge_failed", environment=environment_sid, build=build_sid, error=str(exc))
                # The environment's Logs say it too: a restored deployment whose host a folder
                # service took is not served, and its owner can read why.
                await self.log(environment_sid, "error", f"build {build_sid} is not served: {exc}", build_sid)
                return
            self.applied[environment_sid] = want  # routed lazily or not, that build and variables are served
            self._refused.pop(environment_sid, None)
            metrics.DEPLOYMENTS.labels("applied").inc()
            if route is not None:
                self._lazy.watch(environment_sid, build_sid, route)

    async def withdraw(self, environment_sid: str) -> None:
        if not self._can_apply():
            return
        async with self._locks[environment_sid]:
            try:
                await self.engine.withdraw(environment_sid)
            except (EngineError, KeyError, LookupError) as exc:
                log.info("withdraw_nothing", environment=environment_sid, error=str(exc))
            self.applied.pop(environment_sid, None)
            self._refused.pop(environment_sid, None)
            if self.sink is not None:
                for name, served in list(self.sink.served.items()):
                    if served.environment_sid == environment_sid:
                        del self.sink.served[name]
        self._locks.pop(environment_sid, None)

    async def _desired(self) -> dict[str, tuple[str, str]]:
        """Every environment that serves a build: (build, digest of its variables)."""
        async with self.store.connect() as conn:
            rows = (await conn.execute(select(t.environments.c.sid, t.environments.c.build_sid)
                                       .where(t.environments.c.build_sid.is_not(None)))).all()
            variables: defaultdict[str, dict[str, str]] = defaultdict(dict)
            for env_sid, key, value in (await conn.execute(
                    select(t.variables.c.environment_sid, t.variables.c.key, t.variables.c.value))).all():
                variables[env_sid][key] = value
        return {env_sid: (build_sid, _digest(variables[env_sid])) for env_sid, build_sid in rows}

    async def reconcile(self) -> None:
        """One pass: apply what the store wants and the engine does not serve; withdraw what it no longer wants.

        Catches what this engine's own API calls did not do: changes by the operator's CLI
        (`accounts delete`), by another replica on the same store, or a restart (restore).
        """
        if not self._can_apply():
            return
        await self._refresh_worker_quotas()
        desired = await self._desired()
        for env_sid, want in desired.items():
            if self.applied.get(env_sid) != want and self._refused.get(env_sid) != want:
                await self._converge_one(env_sid)
        for env_sid in [e for e in list(self.applied) if e not in desired]:
            await self.withdraw(env_sid)

    async def _refresh_worker_quotas(self) -> None:
        """An account's max_workers changed by the CLI applies to its running pools within a pass."""
        deployments = getattr(self.engine, "deployments", None)
        quotas = getattr(deployments, "quotas", None)
        if not quotas:
            return
        async with self.store.connect() as conn:
            rows = (await conn.execute(select(t.accounts.c.sid, t.accounts.c.max_workers)
                                       .where(t.accounts.c.sid.in_(list(quotas))))).all()
        for sid, limit in rows:
            deployments.set_worker_quota(sid, limit)

    def changed(self, what: str) -> None:
        """Another replica (or this one) announced a change to `what`, an environment SID or `*`:
        converge it soon, in the background loop."""
        self._pending.add(what)
        self._wake.set()

    async def converge_environment(self, environment_sid: str) -> None:
        """Serve what the store says for this one environment: its build and variables, or nothing."""
        if not self._can_apply():
            return
        async with self.store.connect() as conn:
            build_sid = await conn.scalar(select(t.environments.c.build_sid).where(t.environments.c.sid == environment_sid))
        if build_sid is None:
            if environment_sid in self.applied:  # deleted, or its service or account was
                await self.withdraw(environment_sid)
            return
        await self._converge_one(environment_sid)

    def start(self, interval_s: float) -> None:
        """A full pass every `interval_s` in the background, and announced changes as they come."""
        self._task = asyncio.create_task(self._loop(interval_s), name="control-converger")

    async def _loop(self, interval_s: float) -> None:
        loop = asyncio.get_running_loop()
        full_at = loop.time() + interval_s
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, full_at - loop.time()))
                await asyncio.sleep(NOTIFY_DEBOUNCE_S)
            except TimeoutError:
                pass
            self._wake.clear()
            pending, self._pending = self._pending, set()
            if loop.time() >= full_at:
                pending, full_at = {EVERYTHING}, loop.time() + interval_s
            try:
                await self._pass(pending)
            except StoreUnavailable:  # store_down said so once; what is served stays served
                pass
            except Exception:  # a store outage stops changes, never serving
                log.exception("reconcile_failed")

    async def _pass(self, pending: set[str]) -> None:
        if EVERYTHING not in pending:
            for environment_sid in sorted(pending):
                await self.converge_environment(environment_sid)
            return
        take_over = getattr(self.builder, "take_over", None)
        if take_over is not None:
            await take_over()  # builds whose replica is gone (its lease ran out)
        await self.reconcile()

    async def _lazy_build_failed(self, environment_sid: str, build_sid: str, error: str) -> None:
        """A lazily routed environment's image could not be built: reported like a refused deployment.
        It stays routed (its requests are a 503 naming the build's failure) and counted as applied,
        so the next pass does not build it again; a new deployment or variable change retries it."""
        metrics.DEPLOYMENTS.labels("refused").inc()
        log.error("converge_failed", environment=environment_sid, build=build_sid, error=error, lazy=True)
        await self.log(environment_sid, "error", f"build {build_sid} is not served: {error}", build_sid)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._lazy.close()

    async def log(self, environment_sid: str, level: str, message: str, build_sid: str | None = None) -> None:
        """An engine line in the environment's Logs (deployments, refusals)."""
        async with self.store.begin() as conn:
            env = (await conn.execute(select(t.environments.c.account_sid, t.environments.c.service_sid)
                                      .where(t.environments.c.sid == environment_sid))).first()
            if env is None:
                return
            await conn.execute(insert(t.logs).values(
                sid=new_sid("NO"), account_sid=env.account_sid, service_sid=env.service_sid,
                environment_sid=environment_sid, build_sid=build_sid, level=level, message=message[:4096],
                date_created=t.now(),
            ))
