"""The engine's lifecycle, in order: projects → backend → pools → listeners → images (in the
background, engine/image_queue.py), and back."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path

import structlog
from aiohttp import web

from engine import __version__, metrics, npmdeps, protocol, pydeps
from engine.admin import make_admin_app
from engine.backends.base import Backend, WorkerLimits, WorkerSpec
from engine.quota import WorkerQuota
from engine.config import MiB, Settings
from engine.deployment import Deployments, LiveDeployment
from engine.errors import BackendError, ConfigError, ImageBuildError
from engine.http_conn import front_runner
from engine.image_queue import ImageQueue
from engine.lazy_route import LazyRoute
from engine.pool import Pool, PoolSettings
from engine.project import Project, load_project
from engine.routing import Router
from engine.service import Service
from engine.warmth import PinnedDemand, WarmBudget

log = structlog.get_logger("engine")


def parse_project_arg(arg: str) -> tuple[str, Path]:
    """`NAME=PATH` or `PATH` (the name is then the directory's, made DNS-safe)."""
    name, sep, path = arg.partition("=")
    if sep and "/" not in name and name:
        return name, Path(path)
    directory = Path(arg)
    derived = re.sub(r"[^a-z0-9-]+", "-", directory.resolve().name.lower()).strip("-") or "default"
    return derived, directory


def check_declared_dependencies(project: Project) -> None:
    """What the image build would refuse without running anything (pip options or URLs in
    requirements.txt, non-registry specs in package.json) stops the start, naming the file: images
    are built after the port opens, but a project that can never build is an operator's error.
    What only the install can tell (a version the index does not have) is that service's 503."""
    try:
        if "python" in project.runtimes() and (project.root / pydeps.REQUIREMENTS).is_file():
            pydeps.requirement_lines(project.root / pydeps.REQUIREMENTS)
        if "node" in project.runtimes() and (project.root / npmdeps.PACKAGE_JSON).is_file():
            npmdeps.dependencies(project.root / npmdeps.PACKAGE_JSON)
    except ImageBuildError as exc:
        raise ConfigError(f"service {project.name!r}: {exc}") from exc


def _pick(override: int | None, default: int) -> int:
    """A per-service override if set (0 is a value), else the global setting."""
    return default if override is None else override


def make_backend(settings: Settings, engine_id: str) -> Backend:
    if settings.backend == "process":
        from engine.backends.process import ProcessBackend

        return ProcessBackend()
    from engine.backends.docker import DockerBackend  # only this backend imports `docker`

    return DockerBackend(runtime=settings.runtime, engine_id=engine_id, reap=settings.docker_reap)


class Engine:
    def __init__(self, settings: Settings, *, allow_no_projects: bool = False) -> None:
        """`allow_no_projects`: deployments arrive at runtime (a control API), so no PROJECT_DIR is needed."""
        self.settings = settings
        self.allow_no_projects = allow_no_projects
        self.deployments: Deployments | None = None
        self.engine_id = uuid.uuid4().hex[:12]
        self.services: list[Service] = []
        self.backend: Backend | None = None
        self._runners: list[web.AppRunner] = []
        self._front_runner: web.AppRunner | None = None
        self._stopping = False
        self._warmed = False  # every pool's warm-up is over (then readiness no longer looks at pools)
        self._backend_was_down = False
        self.urls: list[str] = []
        # Set while something the engine must serve is still being brought up after start() (the
        # control plane restoring deployed environments): /readyz answers 503 with this reason.
        self.held_not_ready: str | None = None
        # Idle workers of every pool, folder services and those added at runtime alike (engine/warmth.py).
        self.budget = WarmBudget(settings.warm_budget_mb, settings.warm_budget_workers)
        # Service images, built after the port opens, a few at a time (engine/image_queue.py). Paused
        # until every folder service's pool exists, so those warmed at start are built first.
        self.images = ImageQueue(self._prepare, settings.max_parallel_image_builds, paused=True)
        metrics.IMAGE_BUILDS_WAITING.set_function(lambda: self.images.waiting)

    # --- start ----------------------------------------------------------------------------

    def load(self) -> None:
        """Read every project; errors name the files (before anything is started)."""
        if not self.settings.projects and not (self.allow_no_projects or self.settings.api_port is not None):
            raise ConfigError("no project to serve: give at least one PROJECT_DIR (or ENGINE_PROJECTS), "
                              "or --api-port to deploy through the control API")
        seen: set[str] = set()
        for arg in self.settings.projects:
            name, path = parse_project_arg(arg)
            if name in seen:
                raise ConfigError(f"two projects are named {name!r}; name one explicitly with NAME=PATH")
            seen.add(name)
            project = load_project(path, name)
            for warning in project.warnings:
                log.warning("project_warning", service=name, warning=warning)
            check_declared_dependencies(project)
            self.services.append(Service.from_project(project, self.settings))

    async def start(self) -> None:
        self.load()
        self.budget.check_pinned(self._pinned_demands())
        self.backend = make_backend(self.settings, self.engine_id)
        log.info("isolation", backend=self.backend.name, isolation=self.backend.isolation,
                 runtime=self.settings.runtime if self.settings.backend == "docker" else None,
                 engine_id=self.engine_id)
        metrics.ENGINE_INFO.info({
            "version": __version__, "backend": self.backend.name,
            "runtime": self.settings.runtime if self.settings.backend == "docker" else "none",
        })
        await self.backend.start()
        # No image is built before the ports open: each pool gets its build queued, those warmed at
        # start (pinned, or within the warm budget) first; a request to any other service moves its
        # build to the front and waits for it (build_wait_timeout_s).
        for service in self.services:
            for runtime in service.project.runtimes():
                service.pools[runtime] = await self._make_pool(service.project, runtime, lazy=True)
        admin = web.AppRunner(make_admin_app(self.readiness), access_log=None)
        await admin.setup()
        await web.TCPSite(admin, self.settings.host, self.settings.admin_port).start()
        self._runners.append(admin)
        # Beside the control API a folder service is reached only by its Host: a withdrawn
        # environment's host must be 404, not the folder's.
        router = Router(self.services, self.settings.domain, host_only=self.settings.api_port is not None)
        self.deployments = Deployments(self.settings, router, self.services, self._make_pool)
        front = front_runner(router, self.settings, shutdown_timeout_s=self._drain_s())
        await front.setup()
        await web.TCPSite(front, self.settings.host, self.settings.port).start()
        self._front_runner = front
        self._runners.insert(0, front)
        self.urls = self._describe_urls()
        self.images.resume()

    def _drain_s(self) -> float:
        longest = max((max(s.time_limits_s.values(), default=0) for s in self.services), default=0)
        # Services deployed later take their limits from the same settings: count every override.
        configured = max((f.time_limit_s or 0 for o in self.settings.services.values() for f in o.functions.values()),
                         default=0)
        return max(longest, configured, self.settings.time_limit_s) + 2.0

    # --- deployments at runtime (engine/deployment.py) -------------------------------------

    async def apply(self, dep: LiveDeployment, *, lazy: bool = False) -> LazyRoute | None:
        """Serve `dep`, replacing what `dep.key` served, with no request lost (see engine/deployment.py).
        `lazy`: a key not served yet is routed at once and its images built in the background; the
        LazyRoute returned then tells how its build ends."""
        if self.deployments is None:
            raise BackendError("the engine is not started; deployments are applied once it serves")
        return await self.deployments.apply(dep, lazy=lazy)

    async def withdraw(self, key: str) -> None:
        """Stop serving `key` (404 from the next request) and remove its workers."""
        if self.deployments is None:
            return
        await self.deployments.withdraw(key)

    def _pinned_demands(self) -> list[PinnedDemand]:
        """Each pool whose service sets min_idle in [services.X]: its floor, for the budget check at start."""
        demands = []
        for service in self.services:
            o = self.settings.overrides_for(service.name)
            if o.min_idle:
                demands += [PinnedDemand(service.name, rt, o.min_idle, _pick(o.memory_mb, self.settings.memory_mb))
                            for rt in service.project.runtimes()]
        return demands

    async def _prepare(self, spec: WorkerSpec) -> WorkerSpec:
        """Build (or find) the image of one pool: what the image queue runs."""
        assert self.backend is not None
        return await self.backend.prepare(spec, lambda line: log.info("build_progress", service=spec.service, line=line))

    async def _make_pool(self, project: Project, runtime: str, quota: WorkerQuota | None = None, *,
                         lazy: bool = False, hostname: str | None = None) -> Pool:
        """`lazy`: the pool is made at once and its image built in the background (folder services at
        start); otherwise the image is built first (a deployment is warm before it is switched to).
        `hostname`: a deployed environment's domain name, for its `[environments."<domain>"]` settings."""
        s = self.settings
        per_service = s.overrides_for(project.name)
        per_environment = s.environment_overrides(hostname)
        limits = WorkerLimits(
            memory_bytes=_pick(per_service.memory_mb, s.memory_mb) * MiB, cpus=s.cpus,
            pids=s.pids_limit or (128 if s.backend == "docker" and s.runtime == "runsc" else 64),
            nofile=s.nofile_limit, fsize_bytes=s.fsize_mb * MiB, tmpfs_bytes=s.tmpfs_mb * MiB,
        )
        spec = WorkerSpec(
            engine_id=self.engine_id, service=project.name, build_id=project.content_hash[:12],
            runtime=runtime, project_root=project.root, limits=limits,
        )
        image = self.images.submit(spec)
        if not lazy:
            spec = await image.wait()
            image = None
        root = "/srv/project" if s.backend == "docker" else str(project.root)
        init = protocol.Init(
            service=project.name,
            project_root=root,
            functions=[
                protocol.FunctionEntry(name=f.name, file=f.file, url_path=f.url_path, visibility=f.visibility)
                for f in project.functions_for(runtime)
            ],
            assets=[
                protocol.AssetEntry(url_path=a.url_path, file=a.file, visibility=a.visibility)
                for path, a in project.assets.items() if path != "/"
            ],
            env=project.env,
            limits=protocol.Limits(
                max_log_bytes=s.max_log_bytes, max_response_bytes=s.max_response_bytes,
                max_frame_bytes=s.max_frame_bytes,
            ),
            dev_mode=s.dev_mode,
        )
        pool = Pool(
            self.backend, spec, init,
            PoolSettings(
                min_idle=_pick(per_service.min_idle, s.min_idle),
                max_workers=_pick(per_service.max_workers, s.max_workers), max_queue=s.max_queue,
                idle_timeout_s=s.idle_timeout_s, bootstrap_timeout_s=s.bootstrap_timeout_s,
                max_frame_bytes=s.max_frame_bytes,
                max_worker_invocations=_pick(per_service.max_worker_invocations, s.max_worker_invocations),
                max_worker_age_s=s.max_worker_age_s if per_service.max_worker_age_s is None else per_service.max_worker_age_s,
                max_lifecycle_calls=s.max_lifecycle_calls_per_pool, crash_backoff_max_s=s.crash_backoff_max_s,
                memory_mb=_pick(per_service.memory_mb, s.memory_mb), pinned=per_service.min_idle is not None,
                scale_to_zero_after_s=(per_environment.scale_to_zero_after_s or per_service.scale_to_zero_after_s
                                       or s.scale_to_zero_after_s),
                build_wait_timeout_s=s.build_wait_timeout_s,
            ),
            self.budget,
            quota=quota,
            image=image,
        )
        await pool.start()
        if image is not None and pool.warm_target() > 0:
            image.demand()  # warmed at start: built before the services that stay cold until called
        return pool

    def _describe_urls(self) -> list[str]:
        lines = []
        port = self.settings.port
        for service in self.services:
            base = (
                f"http://{self.settings.host}:{port}" if len(self.services) == 1 and self.settings.api_port is None
                else f"http://{service.name}.{self.settings.domain}:{port}"
            )
            for path, fn in sorted(service.project.functions.items()):
                note = "" if fn.visibility == "public" else f" [{fn.visibility}]"
                if fn.visibility != "private":
                    lines.append(f"{base}{path}  ({fn.runtime} function{note})")
                else:
                    lines.append(f"(private) {service.name}:{path}  ({fn.runtime} function, Runtime.getFunctions() only)")
            for path, asset in sorted(service.project.assets.items()):
                note = "" if asset.visibility == "public" else f" [{asset.visibility}]"
                if asset.visibility != "private":
                    lines.append(f"{base}{path}  (asset{note})")
        return lines

    async def readiness(self) -> tuple[bool, str]:
        """Whether this engine can serve: never whether every tenant's code is good.

        At start-up it waits until every pool's first warm-up is over (min_idle reached, or a start
        failed: a tenant whose code cannot boot is that tenant's 503, not the engine's), the pools of
        deployed environments restored from the control store included. Only pools
        warmed at start (pinned, or within the warm budget) have a warm-up, their image build
        included; the others' images are built in the background and never waited for. So a good
        engine is warm before it takes traffic; likewise once the backend is back after an outage.
        Otherwise only the backend and draining count. While the backend is unreachable but every
        pool still has a live worker, the engine stays ready: the docker backend's workers do not
        need the daemon to serve (their channel bypasses it), only to start or be removed.
        """
        if self._stopping:
            return False, "shutting down"
        if self.held_not_ready is not None:
            return False, self.held_not_ready
        pools = [(f"{s.name}/{rt}", p) for s in self.services for rt, p in s.pools.items()]
        if self.backend is None or not await self.backend.healthy():
            self._backend_was_down = True
            if self._warmed and pools and all(p.size > 0 for _, p in pools):
                return True, (f"ready (backend {self.settings.backend} unreachable: serving on warm workers; "
                              "new workers wait for it)")
            self._warmed = False
            return False, f"backend {self.settings.backend} unreachable"
        if self._backend_was_down:  # back: every pool retries now; warm again before traffic if it was 503
            self._backend_was_down = False
            for _, pool in pools:
                pool.rewarm()
        if not self._warmed:
            # Deployed environments routed lazily at start (restored from the control store) warm
            # like folder services: those the warm budget warms are waited for, the others are not.
            deployed = [(f"{s.name}/{rt}", p) for s in (self.deployments.live.values() if self.deployments else ())
                        for rt, p in s.pools.items()]
            waiting = [name for name, p in pools + deployed if not p.settled]
            if waiting:
                return False, "pools warming: " + ", ".join(waiting)
            self._warmed = True
        failing = [name for name, p in pools if p.failing]
        return True, "ready" + (f" (pools failing, see worker_start_failed/worker_died logs: {', '.join(failing)})"
                                if failing else "")

    # --- stop -----------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop accepting, let in-flight invocations finish, then remove every worker."""
        await self.drain()
        await self.close_pools()

    async def drain(self) -> None:
        """Fail readiness, close the listeners and wait (up to the longest time limit + 2 s) for in-flight requests."""
        self._stopping = True
        for runner in self._runners:
            try:
                await runner.cleanup()
            except Exception:  # keep tearing down whatever else is up
                log.exception("listener_cleanup_failed")

    async def close_pools(self) -> None:
        pools = [p for s in self.services for p in s.pools.values()]
        closing = [p.close() for p in pools] + ([self.deployments.close()] if self.deployments else [])
        await asyncio.gather(*closing, return_exceptions=True)
        await self.images.close()
        if self.backend is not None:
            await self.backend.close()
