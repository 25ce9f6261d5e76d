"""A service: one loaded project with its ids, secrets, limits and one pool per language."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field

from engine.config import Settings
from engine.pool import Pool
from engine.project import FunctionDef, Project


def stable_sid(prefix: str, name: str) -> str:
    """A Twilio-shaped id (`ZS` + 32 hex) derived from the service name, stable across restarts."""
    return prefix + hashlib.sha256(f"{prefix}:{name}".encode()).hexdigest()[:32]


def time_limits_for(project: Project, settings: Settings) -> dict[str, float]:
    """Each function's time limit: its override in the settings, else the global one."""
    overrides = settings.overrides_for(project.name)
    return {
        path: (overrides.functions[path].time_limit_s if path in overrides.functions else None)
        or settings.time_limit_s
        for path in project.functions
    }


@dataclass(eq=False)
class Service:
    name: str
    project: Project
    service_sid: str
    environment_sid: str
    time_limits_s: dict[str, float]  # by function URL path
    pools: dict[str, Pool] = field(default_factory=dict)  # by runtime
    # Deployed at runtime (engine/deployment.py): the Host it is routed by; None for folder services.
    hostname: str | None = None
    # Requests routed to this service and not yet answered: a replaced service drains to zero.
    in_flight: int = 0
    _drained: asyncio.Event | None = field(default=None, repr=False)

    @classmethod
    def from_project(cls, project: Project, settings: Settings) -> Service:
        overrides = settings.overrides_for(project.name)
        return cls(
            name=project.name,
            project=project,
            service_sid=overrides.service_sid or stable_sid("ZS", project.name),
            environment_sid=overrides.environment_sid or stable_sid("ZE", project.name),
            time_limits_s=time_limits_for(project, settings),
        )

    @property
    def auth_token(self) -> str:
        return self.project.env.get("AUTH_TOKEN", "")

    def pool_for(self, function: FunctionDef) -> Pool:
        return self.pools[function.runtime]

    @property
    def ready(self) -> bool:
        return all(pool.ready for pool in self.pools.values())

    @property
    def longest_time_limit_s(self) -> float:
        return max(self.time_limits_s.values(), default=0.0)

    # --- in-flight requests: two integer updates per request, no lock (one event loop) ----------

    def enter(self) -> None:
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self._drained is not None:
            self._drained.set()

    async def drain(self, timeout_s: float) -> bool:
        """Wait until no request routed here is still running (True), or `timeout_s` passed (False).

        Call only once this service is out of the routing table, so no new request can enter.
        """
        if self.in_flight == 0:
            return True
        self._drained = asyncio.Event()
        try:
            await asyncio.wait_for(self._drained.wait(), timeout_s)
        except asyncio.TimeoutError:
            return False
        return True
