"""The docker backend: one hardened container per worker, a Unix socket of its own as the channel.

The request path through this backend reads off the file list: `docker_hardening.py` says how a
worker container is created and checks Docker applied it; `docker_channel.py` makes the worker's
channel directory and socket, bind-mounted read-only into that container alone, and accepts the
runner's one connection (the frames never pass through dockerd); `docker_stream.py` has the
framing it shares with the attach socket, which now carries only the runner's crash output; this module owns a worker container's life (create, start, kill,
remove, why it ended); `docker_reaper.py` finds and removes what is left (orphans, removals that
failed, an outage) and watches the daemon; `docker_oom.py` follows the daemon's `oom` events.

Lifecycle calls (create, inspect, start, kill, remove, builds) go through a bounded thread pool,
never the event loop; the data path is the channel socket itself, driven by asyncio. With
dockerd's `live-restore`, a warm worker keeps serving while the daemon restarts: only starts and
removals wait for it.

Docker SDK and `requests` errors are translated once, in `DockerBackend._call`: an unreachable
daemon becomes `DockerUnreachable`, anything else `BackendError`. While it is unreachable,
`healthy()` is false (so `/readyz` is 503), spawns fail at once (the pool backs off and retries),
workers whose channel drops while it is away are reported lost (502), and the reaper removes what it could not
once the daemon answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar

import docker
import docker.errors
import requests.exceptions
import structlog

from engine import images
from engine.backends.base import Backend, ExitInfo, ExitKind, ProgressFn, WorkerChannel, WorkerSpec
from engine.backends.docker_hardening import (
    WORKER_USER,
    default_pids_limit,
    hardening_problems,
    host_config,
    mount_problems,
)
from engine.backends.docker_oom import OomEvents
from engine.backends.docker_reaper import (
    BUILD_LABEL,
    ENGINE_LABEL,
    MANAGED_LABEL,
    OCI_RUNTIME_LABEL,
    OWNER_LABEL,
    RUNTIME_LABEL,
    SERVICE_LABEL,
    ContainerReaper,
    DockerUnreachable,
    ReapMode,
    Removal,
    root_cause,
)
from engine.backends.docker_channel import ChannelDir, ChannelDirs, DirectStream, open_stderr
from engine.backends.docker_reaper import owner_alive
from engine.backends.docker_stream import detach_socket
from engine.errors import BackendError

__all__ = [  # what the rest of the engine and the tests use from the docker backend
    "BUILD_LABEL", "ENGINE_LABEL", "MANAGED_LABEL", "OCI_RUNTIME_LABEL", "OWNER_LABEL", "RUNTIME_LABEL",
    "SERVICE_LABEL", "DockerBackend", "DockerUnreachable", "DockerWorker", "LostExit", "default_pids_limit",
    "exit_from_state", "hardening_problems",
]

T = TypeVar("T")

log = structlog.get_logger("engine.docker")

EXIT_WAIT_S = 3.0  # how long exit_info() waits for Docker to see a dead worker as stopped
API_TIMEOUT_S = 60  # one docker API call (lifecycle); builds have their own
PING_TIMEOUT_S = 2.0  # one health ping: /readyz must answer quickly even when the daemon hangs


@dataclasses.dataclass(frozen=True)
class LostExit(ExitInfo):
    """How a worker ended cannot be known: the daemon that ran it is unreachable."""

    def describe(self) -> str:
        return f"the worker's container was lost: {self.detail}"


class DockerWorker(WorkerChannel):
    """One worker container and its channel socket."""

    def __init__(self, backend: DockerBackend, container_id: str, stream: DirectStream) -> None:
        self.worker_id = stream.worker_id
        self.container_id = container_id
        self._backend = backend
        self.stream = stream
        self._killed = False  # the engine stopped it (vs it stopping by itself)
        self._exit: ExitInfo | None = None
        self._removal: Removal | None = None
        self._removed = False
        self._lock = threading.Lock()

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def read_line(self) -> bytes:
        return await self.stream.read_line()

    def stderr_tail(self) -> str:
        return self.stream.stderr_tail()

    def waiting_for(self) -> str | None:
        return self.stream.waiting_for()

    async def kill(self) -> None:
        """Close the channel and start removing the container; returns after the first attempt, never raises.

        A removal that fails goes on in the background until the container is gone (`wait_removed`).
        """
        removal = self._start_removal()
        if removal is not None:
            # asyncio.wait: a caller cancelled mid-kill does not stop the removal.
            await asyncio.wait([removal.tried, removal.gone], return_when=asyncio.FIRST_COMPLETED)

    async def wait_removed(self) -> None:
        """Until the container is gone (retried for as long as it takes), or the backend closed."""
        removal = self._start_removal()
        if removal is not None:
            await asyncio.wait([removal.gone])  # ends too when close() stops the retries (it removes the rest)

    def _start_removal(self) -> Removal | None:
        if self._removal is None:
            self.stream.close()
            if self._removed or self._backend.closed:  # close() already removed every container
                self._killed = self._killed or self._exit is None
                self._removed = True
                return None
            self._killed = self._exit is None
            self._removal = self._backend.reaper.remove(self.container_id, self.worker_id, self._remove_sync)
        return self._removal

    async def exit_info(self) -> ExitInfo:
        if self._exit is None and not self._removed and not self._backend.closed:
            try:
                info = await self._backend._call(self._wait_exit_sync)
            except BackendError as exc:  # the daemon cannot tell: say so rather than guess
                info = LostExit(ExitKind.SIGNALED, detail=str(exc))
            if self._exit is None:
                self._exit = info
        if self._exit is not None:
            return self._exit
        return ExitInfo(ExitKind.KILLED if self._killed else ExitKind.SIGNALED, detail="container removed")

    def _remove_sync(self) -> None:
        """Record how it ended (if it ended by itself), then remove it with force."""
        with self._lock:
            if self._removed:
                return
            api = self._backend._api
            try:
                state = api.inspect_container(self.container_id)["State"]
                if not state.get("Running") and self._exit is None:
                    self._exit = exit_from_state(state, killed=False)
                    self._killed = False
                elif self._exit is None:
                    self._exit = ExitInfo(ExitKind.KILLED)
                api.remove_container(self.container_id, force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if exc.status_code == 409:  # removal already in progress: the next try sees it gone
                    raise BackendError(f"worker container {self.worker_id} is being removed by the daemon") from exc
                raise BackendError(f"cannot remove worker container {self.worker_id}: {exc.explanation or exc}") from exc
            self._removed = True
            ChannelDirs.remove_sync(self.stream.channel)
            self._backend.reaper.forget(self.container_id)

    def _wait_exit_sync(self) -> ExitInfo:
        deadline = time.monotonic() + EXIT_WAIT_S
        while True:
            try:
                state = self._backend._api.inspect_container(self.container_id)["State"]
            except docker.errors.NotFound:
                return self._exit or ExitInfo(ExitKind.KILLED if self._killed else ExitKind.SIGNALED, detail="container removed")
            if not state.get("Running"):
                info = exit_from_state(state, killed=self._killed)
                if info.kind is ExitKind.SIGNALED and info.code == 128 + 9 and self._backend._oom is not None \
                        and self._backend._oom.killed_for_memory(self.container_id):
                    return ExitInfo(ExitKind.OOM, code=info.code, detail="late oom event")
                return info
            if time.monotonic() >= deadline:
                return ExitInfo(ExitKind.RUNNING)
            time.sleep(0.05)


def exit_from_state(state: dict[str, Any], *, killed: bool) -> ExitInfo:
    """Map a container's State (from inspect) to an ExitInfo."""
    code = state.get("ExitCode")
    error = state.get("Error") or ""
    if state.get("OOMKilled"):
        return ExitInfo(ExitKind.OOM, code=code, detail=error)
    if killed:
        return ExitInfo(ExitKind.KILLED, code=code)
    if state.get("Running"):
        return ExitInfo(ExitKind.RUNNING)
    if isinstance(code, int) and code > 128:
        return ExitInfo(ExitKind.SIGNALED, code=code, detail=_signal_name(code - 128))
    return ExitInfo(ExitKind.EXITED, code=code, detail=error)


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# --- the backend -------------------------------------------------------------------------------


class DockerBackend(Backend):
    """Workers as hardened containers on one Docker daemon (`runtime` runc, or runsc for gVisor)."""

    name = "docker"

    def __init__(
        self,
        runtime: Literal["runc", "runsc"] = "runc",
        engine_id: str | None = None,
        *,
        executor_threads: int = 8,  # bounds concurrent docker API calls (lifecycle and builds)
        # "dead-owners": at start-up (and every REAP_INTERVAL_S) remove managed containers whose engine
        # process is gone; "all": the daemon is this engine's alone, remove every managed container at start-up.
        reap: ReapMode = "dead-owners",
        log_driver: Literal["none", "json-file"] = "none",
        base_image: str = images.BASE_TAG,
    ) -> None:
        if runtime not in ("runc", "runsc"):
            raise BackendError(f"docker runtime must be runc or runsc, not {runtime!r}")
        if reap not in ("dead-owners", "all"):
            raise BackendError(f"docker_reap must be dead-owners or all, not {reap!r}")
        self.runtime = runtime
        self.engine_id = engine_id or uuid.uuid4().hex[:12]
        self.reap = reap
        self.log_driver = log_driver
        self.base_image = base_image
        self.isolation = (
            f"docker/{runtime}{' (gVisor)' if runtime == 'runsc' else ''}: container per worker, network none, "
            "read-only rootfs, all capabilities dropped, no-new-privileges, uid 10001, memory/cpu/pids limits"
        )
        self._executor = ThreadPoolExecutor(max_workers=executor_threads, thread_name_prefix="docker-backend")
        # Health pings get their own thread and client (short timeout): lifecycle calls stuck on a
        # hung daemon must not delay /readyz.
        self._health_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="docker-health")
        self._client: docker.DockerClient | None = None
        self._ping_client: docker.DockerClient | None = None
        self._where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        self._workers: dict[str, DockerWorker] = {}
        self.reaper = ContainerReaper(self.engine_id, self._where, self._call, lambda: self._api,
                                      lambda container_id: self._workers.pop(container_id, None))
        self.channels = ChannelDirs(self.engine_id, self.reaper.owner)
        self.reaper.sweep_also = functools.partial(self.channels.reap_sync, owner_alive)
        self._runner_lock = asyncio.Lock()  # the shared base and runner images: built once, one at a time
        self._oom: OomEvents | None = None
        self.closed = False

    # -- plumbing --

    @property
    def _api(self) -> docker.APIClient:
        if self._client is None:
            raise BackendError("the docker backend is not started")
        return self._client.api

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run one blocking docker call in the backend's bounded executor; docker errors become BackendError."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args))
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise self.reaper.unreachable(exc) from exc
        except docker.errors.DockerException as exc:
            raise BackendError(f"docker: {' '.join(str(exc).split())[:500]}") from exc

    # -- lifecycle --

    async def start(self) -> None:
        """Connect to the daemon, check the runtime is registered, reap orphan containers."""
        self._client, self._ping_client = await self._call(self._connect_sync)
        version = self._client.api.api_version
        self._oom = OomEvents(lambda: docker.from_env(timeout=API_TIMEOUT_S, version=version).api,
                              f"{ENGINE_LABEL}={self.engine_id}")
        self._oom.start()
        removed = await self.reaper.start(self.reap)
        dirs = await self._call(self.channels.reap_sync, owner_alive)
        log.info("docker_backend_started", engine_id=self.engine_id, docker_host=self._where, runtime=self.runtime,
                 reap=self.reap, reaped=len(removed), channel_dirs_reaped=len(dirs), channel_root=str(self.channels.root))

    def _connect_sync(self) -> tuple[docker.DockerClient, docker.DockerClient]:
        where = self._where
        try:
            client = docker.from_env(timeout=API_TIMEOUT_S)
            info = client.info()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise BackendError(
                f"no Docker daemon reachable at {where} ({root_cause(exc)}); start one (scripts/ensure-docker) "
                "or point DOCKER_HOST at a running daemon"
            ) from exc
        if client.api.base_url.startswith("https://"):
            client.close()
            raise BackendError(f"Docker at {where} uses TLS; the docker backend attaches to workers over unix:// or tcp:// only")
        runtimes = info.get("Runtimes") or {}
        if self.runtime not in runtimes:
            client.close()
            raise BackendError(
                f"the Docker daemon at {where} has no {self.runtime!r} runtime (it has: {', '.join(sorted(runtimes))}); "
                'register it in /etc/docker/daemon.json as {"runtimes": {"runsc": {"path": "/usr/bin/runsc", '
                '"runtimeArgs": ["--network=none"]}}} and reload dockerd (SIGHUP), or run scripts/ensure-docker'
            )
        pinger = docker.from_env(timeout=PING_TIMEOUT_S, version=client.api.api_version)
        return client, pinger

    async def healthy(self) -> bool:
        """Whether the daemon answers a ping within PING_TIMEOUT_S (for /readyz)."""
        pinger = self._ping_client
        if pinger is None or self.closed:
            return False
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(self._health_executor, pinger.ping), PING_TIMEOUT_S + 1)
        except (requests.exceptions.RequestException, docker.errors.DockerException, asyncio.TimeoutError) as exc:
            self.reaper.unreachable(exc)
            return False
        if not self.reaper.reachable:  # back: the watch task reconciles, then marks it reachable
            self.reaper.retry_deferred()
        return self.reaper.reachable

    def unavailable(self) -> str | None:
        if self.reaper.reachable:
            return None
        return f"the Docker daemon at {self._where} is unreachable"

    async def close(self) -> None:
        """Remove every container this backend started (and any labelled with this engine id)."""
        if self.closed:
            return
        reaper_tasks = self.reaper.stop()
        self.reaper.closed = True  # no new retries or watch: what is left is removed below, once
        if self._oom is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._oom.close)
        for worker in list(self._workers.values()):
            worker.stream.close()
        if self._client is not None:
            try:
                await self._call(self.reaper.remove_all_sync)
            except BackendError as exc:
                left = len(self.reaper.containers | self.reaper.deferred)
                log.error("docker_cleanup_incomplete", error=str(exc), left=left,
                          advice="the next engine to start on this daemon removes them (their owner is dead by then)")
            client, self._client = self._client, None
            await self._call(client.close)
        if self._ping_client is not None:
            self._ping_client.close()
            self._ping_client = None
        await self._call(self.channels.remove_all_sync)
        self.closed = True
        self._executor.shutdown(wait=True)
        self._health_executor.shutdown(wait=True)
        for task in reaper_tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- images --

    async def prepare(self, spec: WorkerSpec, progress: ProgressFn | None = None) -> WorkerSpec:
        """Build (or reuse) the base, runner and service images; returns the spec with `image` set.

        The base and runner images every service shares are built once, one at a time; service
        images of different contents build side by side (the engine's image queue bounds how many).
        An image for the same content, built by anyone on this daemon, is reused; building one is
        done under `build_guard` (replicas of one store: one install per content at a time)."""
        async with self._runner_lock:
            runner = await self._call(self._runner_sync, spec, progress)
        image, content = await self._call(self._cached_sync, spec, runner, progress)
        if image is None:
            async with self.build_guard(content):
                image = await self._call(self._service_sync, spec, runner, progress)
        return dataclasses.replace(spec, image=image)

    def _client_or_fail(self) -> docker.DockerClient:
        if self._client is None:
            raise BackendError("the docker backend is not started")
        return self._client

    def _cached_sync(self, spec: WorkerSpec, runner: str, progress: ProgressFn | None) -> tuple[str | None, str]:
        """(the service image if the daemon has one for this content, else None; the content hash)."""
        return images.cached_service_image(self._client_or_fail(), spec.service, Path(spec.project_root), runner, progress)

    def _runner_sync(self, spec: WorkerSpec, progress: ProgressFn | None) -> str:
        return images.ensure_runner_image(self._client_or_fail(), spec.runtime, progress, base_image=self.base_image)

    def _service_sync(self, spec: WorkerSpec, runner: str, progress: ProgressFn | None) -> str:
        return images.ensure_service_image(self._client_or_fail(), spec.service, Path(spec.project_root), runner, progress)

    # -- workers --

    async def spawn(self, spec: WorkerSpec, max_frame_bytes: int) -> WorkerChannel:
        """Create, verify, attach and start one worker container; returns once the channel is open."""
        if spec.image is None:
            raise BackendError(f"service {spec.service}: no image to run; call prepare() first")
        created = asyncio.ensure_future(self._call(self._create_sync, spec))
        try:
            container_id, name, sock, channel, listener = await asyncio.shield(created)
        except asyncio.CancelledError:
            # The create runs on in its thread: remove whatever it makes once it finishes, and wait for
            # that, so a closed pool (a replaced service) has no container left when close() returns.
            # A second cancellation ends the wait, not the removal.
            await asyncio.shield(asyncio.ensure_future(self._discard_created(created)))
            raise
        try:
            stderr = await open_stderr(sock)
            stream = DirectStream(name, channel, listener, stderr, max_frame_bytes)
        except BaseException:
            sock.close()
            listener.close()
            await asyncio.shield(self._call(self._discard_sync, container_id, channel))
            raise
        worker = DockerWorker(self, container_id, stream)
        self._workers[container_id] = worker
        return worker

    async def _discard_created(self, created: asyncio.Future[tuple[str, str, socket.socket, ChannelDir, socket.socket]]) -> None:
        try:
            container_id, _, sock, channel, listener = await created
        except BaseException:  # the create failed (and removed its container) or was itself cancelled
            return
        sock.close()
        listener.close()
        if not self.closed:
            with contextlib.suppress(Exception):  # closing meanwhile: close() removes it instead
                await self._call(self._discard_sync, container_id, channel)

    def _discard_sync(self, container_id: str, channel: ChannelDir) -> None:
        ChannelDirs.remove_sync(channel)
        self.reaper.remove_or_defer_sync(container_id)

    def _create_sync(self, spec: WorkerSpec) -> tuple[str, str, socket.socket, ChannelDir, socket.socket]:
        suffix = uuid.uuid4().hex[:10]
        channel, listener = self.channels.make_sync(suffix)
        try:
            container_id, name, sock = self._create_container_sync(spec, suffix, channel)
        except BaseException:
            listener.close()
            ChannelDirs.remove_sync(channel)
            raise
        return container_id, name, sock, channel, listener

    def _create_container_sync(self, spec: WorkerSpec, suffix: str, channel: ChannelDir) -> tuple[str, str, socket.socket]:
        api = self._api
        expected = host_config(spec, self.runtime, self.log_driver, channel_bind=channel.bind)
        name = f"engine-{images.repo_name(spec.service)}-{spec.runtime}-{suffix}"
        labels = {
            MANAGED_LABEL: "true",
            ENGINE_LABEL: self.engine_id,
            OWNER_LABEL: self.reaper.owner,
            SERVICE_LABEL: spec.service,
            BUILD_LABEL: spec.build_id,
            RUNTIME_LABEL: spec.runtime,
            OCI_RUNTIME_LABEL: self.runtime,
        }
        self.reaper.creating.add(name)
        try:
            created = api.create_container(
                spec.image, name=name, user=WORKER_USER, working_dir="/tmp", labels=labels,
                environment=channel.environment, stdin_open=False, tty=False,
                host_config=api.create_host_config(**expected),
            )
            container_id = created["Id"]
            self.reaper.containers.add(container_id)
        except docker.errors.ImageNotFound as exc:
            raise BackendError(f"service {spec.service}: image {spec.image} is missing; prepare() builds it") from exc
        except docker.errors.DockerException as exc:
            raise BackendError(f"service {spec.service}: cannot create a worker container: {exc}") from exc
        finally:
            self.reaper.creating.discard(name)
        try:
            attrs = api.inspect_container(container_id)
            problems = hardening_problems(attrs["HostConfig"], spec, self.runtime, self.log_driver, channel_bind=channel.bind)
            problems += mount_problems(attrs.get("Mounts") or [], channel.bind)
            if created.get("Warnings"):
                problems += [f"docker warned: {w}" for w in created["Warnings"]]
            if problems:
                raise BackendError(
                    f"service {spec.service}: Docker did not apply the worker limits ({'; '.join(problems)}); "
                    "refusing to run the worker without them"
                )
            # Only the runner's crash output: the protocol has its own socket.
            raw = api.attach_socket(container_id, params={"stderr": 1, "stream": 1})
            sock = detach_socket(raw)
            try:
                api.start(container_id)
            except BaseException:
                sock.close()
                raise
        except BaseException as exc:
            self.reaper.remove_or_defer_sync(container_id)
            if isinstance(exc, docker.errors.DockerException):
                raise BackendError(f"service {spec.service}: cannot start a worker container: {exc}") from exc
            raise
        return container_id, name, sock
