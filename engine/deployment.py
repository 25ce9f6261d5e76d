"""Services added, replaced and removed while the engine runs (issue 9, "Deployments with zero downtime").

A deployment is applied in this order, and only the last step touches the request path:

1. load the project (errors name the file) and check its hostname and name against what is served;
2. prepare its images and start its pools, then wait until each has `min_idle` workers ready;
3. swap the routing table: one reference assignment, no await between the last check and it, so
   every request after it routes to the new service and every request before it keeps the old
   service object it was routed to (`Service.enter/leave` count those);
4. wait for the old service's in-flight requests (bounded by `drain_bound_s`), then close its pools,
   which removes their workers.

Calls for one key run one at a time in arrival order, and a call that a later one for the same key
has already superseded does nothing (the last one wins). Calls for different keys run concurrently.

A key not served yet may be applied lazily (`apply(dep, lazy=True)`: the control plane restoring
its store, a replica's first sight of an environment): step 2 only makes the pools and queues
their images, like a folder service's at start, so hundreds of environments are routed at once
instead of built one after the other (engine/lazy_route.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog

from engine import metrics, npmdeps
from engine.quota import WorkerQuota
from engine.config import Settings
from engine.errors import BackendError, ConfigError, ImageBuildError, ProjectError
from engine.lazy_route import LazyRoute
from engine.pool import Pool
from engine.project import Project, load_project
from engine.routing import Router
from engine.service import Service, time_limits_for

log = structlog.get_logger("engine.deployment")

_SERVICE_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")

#: Added to the longest time limit and the worker wait when draining a replaced service: time for a
#: reply that is ready to be written, and for the worker's `done`.
DRAIN_GRACE_S = 2.0
#: How many worker starts in a row may fail while warming a new build before the deployment is refused.
WARM_MAX_FAILURES = 3


@dataclass(frozen=True)
class LiveDeployment:
    key: str                  # stable identity of what is served: the environment SID (ZE…)
    service_name: str         # bounded label/metric name: "<service unique_name>-<environment unique_name>" made DNS-safe
    hostname: str             # the environment's domain_name, routed by Host (e.g. "shop-dev.localhost")
    project_root: Path        # a materialised project dir: functions/, assets/, package.json / requirements.txt (no .env)
    env: Mapping[str, str]    # the environment's variables
    service_sid: str
    environment_sid: str
    build_sid: str
    account_sid: str | None = None  # the owner whose worker quota its pools share (None: no quota)
    max_workers_per_account: int | None = None  # that quota now (None: the engine-wide setting)


class NameClash(ConfigError):
    """A deployment would be served at a hostname or under a name something else already has."""


def deployed_hostname(dep: LiveDeployment) -> str:
    """The hostname as the router compares it (a port or path in it is not stripped: it is refused)."""
    return dep.hostname.lower().rstrip(".")


def load_deployment(dep: LiveDeployment, settings: Settings) -> Service:
    """The service a deployment describes, without pools; ConfigError names the file or field at fault.

    Blocking (reads the project): call it off the event loop.
    """
    what = f"deployment {dep.service_name!r} (environment {dep.key}, build {dep.build_sid})"
    if not _SERVICE_NAME.match(dep.service_name):
        raise ConfigError(f"{what}: service_name must be 1-63 lowercase letters, digits and '-' (a DNS label)")
    hostname = deployed_hostname(dep)
    if not _HOSTNAME.match(hostname):
        raise ConfigError(f"{what}: hostname {dep.hostname!r} is not a DNS name (lowercase letters, digits, '-', '.')")
    try:
        project = load_project(Path(dep.project_root), dep.service_name)
    except ProjectError as exc:
        raise ConfigError(f"{what}: {exc}") from exc
    package_json = project.root / npmdeps.PACKAGE_JSON
    if package_json.is_file():
        try:
            npmdeps.dependencies(package_json)  # the same check the image build makes, before any work
        except ImageBuildError as exc:
            raise ConfigError(f"{what}: {exc}") from exc
    # The deployment's variables are the environment's, never a file in the build.
    project = dataclasses.replace(project, env={str(k): str(v) for k, v in dep.env.items()})
    return Service(
        name=dep.service_name, project=project, service_sid=dep.service_sid, environment_sid=dep.environment_sid,
        time_limits_s=time_limits_for(project, settings), hostname=hostname,
    )


@dataclass
class _Slot:
    """Serialises the calls for one key; `latest` is the ticket of the newest call."""

    lock: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)
    latest: int = 0


class _Superseded(Exception):
    pass


# (project, runtime, quota, hostname=...): the engine's `_make_pool`; the hostname picks the
# environment's own settings ([environments."<domain name>"]).
PoolMaker = Callable[..., Awaitable[Pool]]


class Deployments:
    """The deployed services of one engine, and the rolling switch between their builds."""

    def __init__(self, settings: Settings, router: Router, folder: list[Service], make_pool: PoolMaker) -> None:
        self.settings = settings
        self.router = router
        self.folder = folder
        self.make_pool = make_pool
        self.live: Mapping[str, Service] = {}  # by key; replaced whole, never mutated
        self._slots: dict[str, _Slot] = {}
        self._retiring: set[Service] = set()
        self._tasks: set[asyncio.Future[None]] = set()  # retirements under way
        self._closed = False
        self.quotas: dict[str, WorkerQuota] = {}  # by account: the worker quota its deployments share

    def set_worker_quota(self, account_sid: str, limit: int | None) -> WorkerQuota:
        """The account's shared worker quota, with its limit set now (None: the engine-wide setting)."""
        limit = self.settings.max_workers_per_account if limit is None else limit
        quota = self.quotas.get(account_sid)
        if quota is None:
            quota = self.quotas[account_sid] = WorkerQuota(account_sid, limit)
        elif quota.limit != limit:
            quota.limit = limit
            quota.freed()  # a raised quota lets denied starts go now
        return quota

    def drain_bound_s(self, service: Service) -> float:
        """How long a replaced service may keep running requests it already took."""
        return service.longest_time_limit_s + self.settings.acquire_timeout_s + DRAIN_GRACE_S

    # --- the two operations -----------------------------------------------------------------

    async def apply(self, dep: LiveDeployment, *, lazy: bool = False) -> LazyRoute | None:
        """Serve `dep` at its hostname, replacing what its key served before, with no request lost.

        `lazy`: if nothing is served for `dep.key` yet (an engine restoring its store, a replica's
        first sight of an environment), route it at once with its images queued like a folder
        service's (the warm budget decides whether it warms now), and return the LazyRoute that
        tells how its build ends. A key already served always gets the new build prepared and warm
        before the switch (None is returned): laziness never costs a served environment a request.
        """
        slot, ticket = self._take_ticket(dep.key)
        async with slot.lock:
            if ticket != slot.latest:
                log.info("deployment_superseded", key=dep.key, service=dep.service_name, build=dep.build_sid)
                return None
            self._check_free(dep)
            began = time.monotonic()
            service = await asyncio.to_thread(load_deployment, dep, self.settings)
            lazily = lazy and dep.key not in self.live
            try:
                quota = (self.set_worker_quota(dep.account_sid, dep.max_workers_per_account)
                         if dep.account_sid is not None else None)
                if lazily:
                    await self._route(service, quota)
                else:
                    await self._start(service, self.live.get(dep.key), quota)
                if ticket != slot.latest:
                    raise _Superseded
                self._check_free(dep)  # again: another key may have taken the name while this one warmed
                old = self.live.get(dep.key)
                self._publish({**self.live, dep.key: service})  # the switch
            except _Superseded:
                log.info("deployment_superseded", key=dep.key, service=dep.service_name, build=dep.build_sid)
                await self._close(service)
                return None
            except BaseException:
                await self._close(service)
                raise
        log.info("deployment_switched", key=dep.key, service=service.name, hostname=service.hostname,
                 build=dep.build_sid, replaced=old is not None, lazy=lazily,
                 prepare_ms=round((time.monotonic() - began) * 1000))
        if old is not None:
            await self._retire_shielded(old)
        if not lazily:
            return None
        jobs = [job for job in (p.image_job for p in service.pools.values()) if job is not None]
        return LazyRoute(dep.key, service.name, jobs, lambda: self.live.get(dep.key) is service)

    async def withdraw(self, key: str) -> None:
        """Stop serving `key` (404 from the next request) and remove its workers once its requests end."""
        slot, ticket = self._take_ticket(key)
        async with slot.lock:
            old = self.live.get(key)
            if old is not None:
                self._publish({k: s for k, s in self.live.items() if k != key})
        if ticket == slot.latest and not slot.lock.locked():
            self._slots.pop(key, None)  # nothing served and nothing waiting: keep no state per gone key
        if old is None:
            return
        log.info("deployment_withdrawn", key=key, service=old.name, hostname=old.hostname)
        await self._retire_shielded(old)

    async def close(self) -> None:
        """Engine stop: close every deployed pool (the listener has already drained the requests)."""
        self._closed = True
        services = list(self.live.values()) + list(self._retiring)
        await asyncio.gather(*(self._close(s) for s in services), return_exceptions=True)
        for task in list(self._tasks):  # retirements still waiting on a drain: their pools are closed now
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- steps ------------------------------------------------------------------------------

    def _take_ticket(self, key: str) -> tuple[_Slot, int]:
        if self._closed:
            raise BackendError("the engine is shutting down; deployments are not accepted")
        slot = self._slots.setdefault(key, _Slot())
        slot.latest += 1
        return slot, slot.latest

    def folder_clash(self, hostname: str, service_name: str) -> str | None:
        """The folder service (described) that already has this hostname or name, if any."""
        hostname = hostname.lower().rstrip(".")
        for service in self.folder:
            if hostname == self.router.folder_hostname(service) or service_name == service.name:
                return (f"the folder service {service.name!r} ({service.project.root}, reached at "
                        f"{self.router.folder_hostname(service)})")
        return None

    def _check_free(self, dep: LiveDeployment) -> None:
        """A hostname or service name is served by one thing only; the error names both."""
        hostname = deployed_hostname(dep)
        folder = self.folder_clash(hostname, dep.service_name)
        if folder is not None:
            raise NameClash(
                f"deployment {dep.service_name!r} (environment {dep.key}) at {hostname} clashes with "
                f"{folder}; rename one of them"
            )
        for key, service in self.live.items():
            if key != dep.key and (service.hostname == hostname or service.name == dep.service_name):
                raise NameClash(
                    f"deployment {dep.service_name!r} (environment {dep.key}) at {hostname} clashes with the "
                    f"deployment {service.name!r} (environment {key}) at {service.hostname}; rename one of them"
                )

    async def _route(self, service: Service, quota: WorkerQuota | None) -> None:
        """Pools made at once, their images queued (engine/image_queue.py): a request waits for its
        image (moved to the front), the warm budget decides which warm now, a failed build is this
        service's 503."""
        for runtime in service.project.runtimes():
            service.pools[runtime] = await self.make_pool(service.project, runtime, quota, lazy=True,
                                                          hostname=service.hostname)

    async def _start(self, service: Service, replacing: Service | None, quota: WorkerQuota | None = None) -> None:
        """Images prepared, pools started and warm (`min_idle` ready each), or an error saying why not.

        A pool that replaces one is also started with as many workers as that one has, so the traffic
        it takes over does not wait for cold starts; those extra workers are waited for only while the
        bootstrap bound lasts.
        """
        targets: dict[str, int] = {}
        for runtime in service.project.runtimes():
            try:
                pool = service.pools[runtime] = await self.make_pool(service.project, runtime, quota,
                                                                         hostname=service.hostname)
            except ImageBuildError as exc:  # the build's content is at fault (requirements, package.json)
                raise ConfigError(f"deployment {service.name!r}: {exc}") from exc
            previous = replacing.pools.get(runtime) if replacing is not None else None
            if previous is not None:
                pool.inherit_warmth(previous)  # the warm budget sees the traffic it takes over as its own
                targets[runtime] = min(previous.size, pool.settings.max_workers)
                pool.prewarm(targets[runtime])
        timeout_s = self.settings.bootstrap_timeout_s + DRAIN_GRACE_S
        deadline = asyncio.get_running_loop().time() + timeout_s

        def warm() -> bool:
            return service.ready and all(p.idle_count >= targets.get(rt, 0) for rt, p in service.pools.items())

        while not warm():
            if service.ready and asyncio.get_running_loop().time() > deadline:
                return  # min_idle is there; the extra workers keep starting in the background
            for pool in service.pools.values():
                if pool.start_failures >= WARM_MAX_FAILURES:
                    if service.ready:
                        return  # min_idle is there; the extra workers are retried in the background
                    raise BackendError(
                        f"deployment {service.name!r}: workers of {pool.name} fail to start "
                        f"({pool.start_failures} attempts): {pool.last_failure}"
                    )
            if asyncio.get_running_loop().time() > deadline:
                raise BackendError(
                    f"deployment {service.name!r}: its pools did not have min_idle workers ready within "
                    f"{timeout_s:g} s (bootstrap_timeout_s + {DRAIN_GRACE_S:g} s)"
                )
            await asyncio.sleep(0.05)

    def _publish(self, live: Mapping[str, Service]) -> None:
        self.live = live
        self.router.publish({s.hostname: s for s in live.values() if s.hostname is not None})

    async def _retire_shielded(self, old: Service) -> None:
        """Retire `old`; a caller that stops waiting (cancelled) does not stop the retirement."""
        task = asyncio.ensure_future(self._retire(old))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await asyncio.shield(task)

    async def _retire(self, old: Service) -> None:
        """Let the requests already routed to `old` finish (bounded), then remove its workers."""
        self._retiring.add(old)
        try:
            began = time.monotonic()
            bound = self.drain_bound_s(old)
            drained = await old.drain(bound)
            if not drained:
                log.warning("deployment_drain_timeout", service=old.name, in_flight=old.in_flight, bound_s=bound)
            drain_s = time.monotonic() - began
            await self._close(old, f"{old.name} was replaced or withdrawn while this request waited")
            log.info("deployment_retired", service=old.name, build=old.project.content_hash[:12], drained=drained,
                     drain_ms=round(drain_s * 1000), remove_ms=round((time.monotonic() - began - drain_s) * 1000))
        finally:
            self._retiring.discard(old)

    async def _close(self, service: Service, reason: str = "the engine is shutting down") -> None:
        """Close a service's pools (their workers are removed); forget its metrics if its name is gone."""
        await asyncio.gather(*(p.close(reason) for p in service.pools.values()), return_exceptions=True)
        still_named = any(s.name == service.name for s in self.live.values()) or any(
            s.name == service.name for s in self._retiring if s is not service
        )
        if not still_named:
            metrics.forget_service(service.name)
