"""The converger: turns store state (which build each environment serves, its variables) into
routes and pools through the data plane's public surface, `Engine.apply` and `Engine.withdraw`.

One lock per environment orders its changes (a deployment and a variable change never race).
Deployments are applied before the store records them, so a build the engine refuses changes
nothing; variable changes are recorded first and then roll the environment's workers.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import insert, select

from engine.control import metrics
from engine.control import store as t
from engine.control.errors import ApiError, BadRequest
from engine.control.logsink import LogSink, Served
from engine.control.shapes import new_sid
from engine.errors import EngineError

log = structlog.get_logger("engine.control")


class NotSupported(ApiError):
    status, code = 501, 20501


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
        )

    async def deploy(self, environment_sid: str, build_sid: str) -> None:
        """Serve `build_sid` on the environment (warm first, then switch); 400 if the engine refuses it."""
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
                raise BadRequest(f"build {build_sid} cannot be served: {exc}") from None
        metrics.DEPLOYMENTS.labels("applied").inc()
        await self.log(environment_sid, "info", f"now serving build {build_sid}", build_sid)

    async def environment_changed(self, environment_sid: str) -> None:
        """Variables changed: roll the environment's workers with the new values (if it serves a build)."""
        if not self._can_apply():
            return
        async with self._locks[environment_sid]:
            async with self.store.connect() as conn:
                build_sid = await conn.scalar(select(t.environments.c.build_sid).where(t.environments.c.sid == environment_sid))
            if build_sid is None:
                return
            try:
                await self.engine.apply(await self.live(environment_sid, build_sid))
                metrics.DEPLOYMENTS.labels("applied").inc()
            except (EngineError, LookupError) as exc:
                metrics.DEPLOYMENTS.labels("refused").inc()
                log.warning("variables_not_applied", environment=environment_sid, error=str(exc))

    async def withdraw(self, environment_sid: str) -> None:
        if not self._can_apply():
            return
        async with self._locks[environment_sid]:
            try:
                await self.engine.withdraw(environment_sid)
            except (EngineError, KeyError, LookupError) as exc:
                log.info("withdraw_nothing", environment=environment_sid, error=str(exc))
            if self.sink is not None:
                for name, served in list(self.sink.served.items()):
                    if served.environment_sid == environment_sid:
                        del self.sink.served[name]
        self._locks.pop(environment_sid, None)

    async def restore(self) -> None:
        """At start: serve again every environment's build from the store."""
        if not self._can_apply():
            return
        async with self.store.connect() as conn:
            rows = (await conn.execute(select(t.environments.c.sid, t.environments.c.build_sid)
                                       .where(t.environments.c.build_sid.is_not(None)))).all()
        for env_sid, build_sid in rows:
            try:
                async with self._locks[env_sid]:
                    await self.engine.apply(await self.live(env_sid, build_sid))
            except (EngineError, LookupError) as exc:
                log.error("restore_failed", environment=env_sid, build=build_sid, error=str(exc))

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
