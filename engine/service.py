"""A service: one loaded project with its ids, secrets, limits and one pool per language."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from engine.config import Settings
from engine.pool import Pool
from engine.project import FunctionDef, Project


def stable_sid(prefix: str, name: str) -> str:
    """A Twilio-shaped id (`ZS` + 32 hex) derived from the service name, stable across restarts."""
    return prefix + hashlib.sha256(f"{prefix}:{name}".encode()).hexdigest()[:32]


@dataclass
class Service:
    name: str
    project: Project
    service_sid: str
    environment_sid: str
    time_limits_s: dict[str, float]  # by function URL path
    pools: dict[str, Pool] = field(default_factory=dict)  # by runtime

    @classmethod
    def from_project(cls, project: Project, settings: Settings) -> Service:
        overrides = settings.overrides_for(project.name)
        limits = {
            path: (overrides.functions[path].time_limit_s if path in overrides.functions else None)
            or settings.time_limit_s
            for path in project.functions
        }
        return cls(
            name=project.name,
            project=project,
            service_sid=overrides.service_sid or stable_sid("ZS", project.name),
            environment_sid=overrides.environment_sid or stable_sid("ZE", project.name),
            time_limits_s=limits,
        )

    @property
    def auth_token(self) -> str:
        return self.project.env.get("AUTH_TOKEN", "")

    def pool_for(self, function: FunctionDef) -> Pool:
        return self.pools[function.runtime]

    @property
    def ready(self) -> bool:
        return all(pool.ready for pool in self.pools.values())
