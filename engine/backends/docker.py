"""The docker backend: one hardened container per worker, its stdin/stdout attached as the channel.

Lifecycle calls (create, inspect, start, kill, remove, builds) go through a bounded thread pool,
never the event loop. The data path is the attach socket itself, driven by asyncio: without a TTY
Docker multiplexes stdout and stderr on it in frames with an 8-byte header, which `StreamDemux`
splits; stdout feeds a `LineSplitter` that enforces `max_frame_bytes`, stderr a bounded
`StderrTail`. Both are pure and tested on their own.

Every container carries labels that say it is the engine's and which engine process owns it, so
start-up can reap what a dead engine left behind and close() removes everything this one made.

The daemon may go away while the engine runs (restarted, crashed, its socket gone). Docker SDK and
`requests` errors are translated once, in `DockerBackend._call`: an unreachable daemon becomes
`DockerUnreachable`, anything else `BackendError`. While it is unreachable, `healthy()` is false
(so `/readyz` is 503), spawns fail at once (the pool backs off and retries), workers whose channel
drops are reported lost (502) and the containers that could not be removed are remembered; a watch
task pings the daemon and, once it answers again, removes them. Nothing waits on a dead daemon.
"""

from __future__ import annotations

import asyncio
import collections
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
import docker.types
import requests.exceptions
import structlog

from engine import images
from engine.backends.base import Backend, ExitInfo, ExitKind, ProgressFn, WorkerChannel, WorkerSpec
from engine.backends.docker_oom import OomEvents
from engine.errors import BackendError, ChannelClosed, FrameTooLarge

T = TypeVar("T")

log = structlog.get_logger("engine.docker")

MANAGED_LABEL = images.MANAGED_LABEL  # "true" on every container and image the engine makes
ENGINE_LABEL = "io.functions-engine.engine"  # the engine id that started the container
OWNER_LABEL = "io.functions-engine.owner"  # host/boot/pid/start-time of that engine process
SERVICE_LABEL = "io.functions-engine.service"
BUILD_LABEL = "io.functions-engine.build"
RUNTIME_LABEL = "io.functions-engine.runtime"  # the runner language: python, node
OCI_RUNTIME_LABEL = "io.functions-engine.oci-runtime"  # runc or runsc

WORKER_USER = "10001:10001"  # the runner image's non-root user

#: Default pids limit per OCI runtime. runc counts only the worker's own processes and threads.
#: runsc puts the whole gVisor sandbox (Sentry, gofer and their Go threads) in the container's pids
#: cgroup: an idle Python worker already uses ~55-60 of them, a 16-thread handler ~92, eight child
#: processes ~104; so it gets 64 on top of that baseline.
DEFAULT_PIDS_LIMIT = {"runc": 64, "runsc": 128}

STDERR_TAIL_BYTES = 8 * 1024  # runner crash output kept per worker for logs
EXIT_WAIT_S = 3.0  # how long exit_info() waits for Docker to see a dead worker as stopped
API_TIMEOUT_S = 60  # one docker API call (lifecycle); builds have their own
PING_TIMEOUT_S = 2.0  # one health ping: /readyz must answer quickly even when the daemon hangs
RECONNECT_INTERVAL_S = 1.0  # how often an unreachable daemon is pinged until it answers again
REAP_INTERVAL_S = 60.0  # how often containers of dead engine processes are looked for while running
LOG_MAX_BYTES = "1m"  # json-file log cap, when that driver is chosen

# The bound on stdout lines queued but not yet read: beyond it the socket is no longer read
# (backpressure), so a worker writing while nobody listens cannot grow the engine's memory.
_PENDING_SLACK_BYTES = 64 * 1024


class DockerUnreachable(BackendError):
    """The Docker daemon did not answer: its socket is gone, refuses connections or timed out."""


@dataclasses.dataclass(frozen=True)
class LostExit(ExitInfo):
    """How a worker ended cannot be known: the daemon that ran it is unreachable."""

    def describe(self) -> str:
        return f"the worker's container was lost: {self.detail}"


def default_pids_limit(runtime: str) -> int:
    """The pids limit a worker gets under `runtime` when none is configured."""
    return DEFAULT_PIDS_LIMIT.get(runtime, DEFAULT_PIDS_LIMIT["runc"])


# --- framing: pure, no I/O ---------------------------------------------------------------------

STDOUT = 1
STDERR = 2
_HEADER_BYTES = 8


class StreamDemux:
    """Splits Docker's multiplexed attach stream into (stream id, payload) pieces.

    Each frame is an 8-byte header (stream id, three zero bytes, big-endian payload length) and
    the payload. Chunks may cut anywhere, headers included; payloads are handed on as they arrive,
    so a large frame is never buffered whole.
    """

    __slots__ = ("_header", "_stream", "_remaining")

    def __init__(self) -> None:
        self._header = bytearray()
        self._stream = STDOUT
        self._remaining = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        pos, size = 0, len(data)
        while pos < size:
            if self._remaining:
                take = min(self._remaining, size - pos)
                out.append((self._stream, data[pos : pos + take]))
                self._remaining -= take
                pos += take
                continue
            need = _HEADER_BYTES - len(self._header)
            if not self._header and size - pos >= _HEADER_BYTES:
                header = data[pos : pos + _HEADER_BYTES]
                pos += _HEADER_BYTES
            else:
                self._header += data[pos : pos + need]
                pos += min(need, size - pos)
                if len(self._header) < _HEADER_BYTES:
                    break
                header = bytes(self._header)
                self._header.clear()
            self._stream = header[0]
            self._remaining = int.from_bytes(header[4:8], "big")
        return out


class LineSplitter:
    """Turns stdout bytes into lines (without the newline), refusing any line over `max_frame_bytes`."""

    __slots__ = ("max_frame_bytes", "lines", "pending_bytes", "_partial")

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.lines: collections.deque[bytes] = collections.deque()
        self.pending_bytes = 0  # bytes in `lines`, for backpressure
        self._partial = bytearray()

    def feed(self, data: bytes) -> None:
        start = 0
        limit = self.max_frame_bytes
        while True:
            newline = data.find(b"\n", start)
            if newline < 0:
                break
            if self._partial:
                self._partial += data[start:newline]
                line = bytes(self._partial)
                self._partial.clear()
            else:
                line = data[start:newline]
            if len(line) > limit:
                raise FrameTooLarge(f"the worker sent a line of {len(line)} bytes; the limit is {limit} (max_frame_bytes)")
            self.lines.append(line)
            self.pending_bytes += len(line)
            start = newline + 1
        if len(self._partial) + len(data) - start > limit:
            raise FrameTooLarge(f"the worker sent more than {limit} bytes without a newline (max_frame_bytes)")
        if start < len(data):
            self._partial += data[start:]

    def pop(self) -> bytes:
        line = self.lines.popleft()
        self.pending_bytes -= len(line)
        return line

    @property
    def partial_bytes(self) -> int:
        return len(self._partial)


class StderrTail:
    """Keeps the last `max_bytes` of a stream; older bytes are dropped."""

    __slots__ = ("max_bytes", "_buf")

    def __init__(self, max_bytes: int = STDERR_TAIL_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data
        if len(self._buf) > 2 * self.max_bytes:  # trim in batches, not on every write
            del self._buf[: -self.max_bytes]

    def text(self) -> str:
        return bytes(self._buf[-self.max_bytes :]).decode("utf-8", errors="replace")


# --- the channel -------------------------------------------------------------------------------


class _AttachProtocol(asyncio.Protocol):
    """Reads the attach socket as data arrives: stdout lines queue up (bounded), stderr is drained."""

    def __init__(self, max_frame_bytes: int) -> None:
        self.demux = StreamDemux()
        self.stdout = LineSplitter(max_frame_bytes)
        self.stderr = StderrTail()
        self.transport: asyncio.Transport | None = None
        self.error: Exception | None = None  # a framing error, raised by the next read_line
        self.closed = False
        self._max_pending = max_frame_bytes + _PENDING_SLACK_BYTES
        self._reading_paused = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.error is not None:
            return
        try:
            for stream, payload in self.demux.feed(data):
                if stream == STDOUT:
                    self.stdout.feed(payload)
                else:
                    self.stderr.feed(payload)
        except FrameTooLarge as exc:
            self.error = exc
            self._pause_reading()
        if self.stdout.pending_bytes > self._max_pending:
            self._pause_reading()
        self._wake_reader()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake_reader()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake_reader()
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    async def drain(self) -> None:
        if self._write_paused and not self.closed:
            waiter = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(waiter)
            await waiter

    async def wait_readable(self) -> None:
        if self._reading_paused and self.error is None and self.stdout.pending_bytes <= self._max_pending:
            self._reading_paused = False
            if self.transport is not None and not self.closed:
                self.transport.resume_reading()
        waiter = asyncio.get_running_loop().create_future()
        self._read_waiter = waiter
        try:
            await waiter
        finally:
            self._read_waiter = None

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class DockerWorker(WorkerChannel):
    """One worker container and its attached stdin/stdout."""

    def __init__(self, backend: DockerBackend, container_id: str, name: str, protocol: _AttachProtocol) -> None:
        self.worker_id = name
        self.container_id = container_id
        self._backend = backend
        self._protocol = protocol
        self._killed = False  # the engine stopped it (vs it stopping by itself)
        self._exit: ExitInfo | None = None
        self._kill_task: asyncio.Future[None] | None = None
        self._removed = False
        self._lock = threading.Lock()

    async def send(self, data: bytes) -> None:
        protocol = self._protocol
        if protocol.closed or protocol.transport is None or protocol.transport.is_closing():
            raise ChannelClosed(f"worker {self.worker_id}: its stdin is closed")
        protocol.transport.write(data)
        await protocol.drain()

    async def read_line(self) -> bytes:
        protocol = self._protocol
        stdout = protocol.stdout
        while not stdout.lines:
            if protocol.error is not None:
                raise protocol.error
            if protocol.closed:
                raise ChannelClosed(f"worker {self.worker_id}: its stdout ended")
            await protocol.wait_readable()
        return stdout.pop()

    def stderr_tail(self) -> str:
        return self._protocol.stderr.text()

    async def kill(self) -> None:
        """Close the channel and remove the container; never raises (a removal that fails is retried later)."""
        if self._kill_task is None:
            if self._protocol.transport is not None:
                self._protocol.transport.close()
            if self._removed or self._backend.closed:  # close() already removed every container
                self._killed = self._killed or self._exit is None
                self._removed = True
                return
            self._killed = self._exit is None
            self._kill_task = asyncio.ensure_future(self._remove())
        # Shielded: a caller cancelled mid-kill must not leave the container behind.
        await asyncio.shield(self._kill_task)

    async def _remove(self) -> None:
        try:
            await self._backend._call(self._remove_sync)
        except BackendError as exc:
            self._backend._defer_removal(self.container_id, exc)

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
                if exc.status_code == 409:  # removal already in progress
                    return
                raise BackendError(f"cannot remove worker container {self.worker_id}: {exc.explanation or exc}") from exc
            self._removed = True
            self._backend._forget(self.container_id)

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
        reap: Literal["dead-owners", "all"] = "dead-owners",
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
        self._containers: set[str] = set()  # ids of containers this backend made and has not removed
        self._creating: set[str] = set()  # names of containers being created (their id is not known yet)
        self._workers: dict[str, DockerWorker] = {}
        self._deferred: set[str] = set()  # containers whose removal failed; retried when the daemon answers
        self._reachable = True
        self._watch: asyncio.Task[None] | None = None  # pings an unreachable daemon until it is back
        self._reaper: asyncio.Task[None] | None = None
        self._owner = _owner_token()
        self._prepare_lock = asyncio.Lock()
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
            raise self._unreachable(exc) from exc
        except docker.errors.DockerException as exc:
            raise BackendError(f"docker: {' '.join(str(exc).split())[:500]}") from exc

    def _unreachable(self, exc: BaseException) -> DockerUnreachable:
        """Note that the daemon stopped answering (once), start watching for it, and describe it."""
        if self._reachable and not self.closed:
            self._reachable = False
            log.error("docker_unreachable", docker_host=self._where, error=_root_cause(exc))
        if (self._watch is None or self._watch.done()) and not self.closed:
            self._watch = asyncio.get_running_loop().create_task(self._watch_daemon(), name="docker-watch")
        return DockerUnreachable(f"the Docker daemon at {self._where} is unreachable ({_root_cause(exc)})")

    def _forget(self, container_id: str) -> None:
        self._containers.discard(container_id)
        self._workers.pop(container_id, None)
        self._deferred.discard(container_id)

    def _defer_removal(self, container_id: str, exc: BaseException) -> None:
        """A container could not be removed now: remove it once the daemon answers again (or at close)."""
        self._deferred.add(container_id)
        log.warning("docker_remove_deferred", container=container_id[:12], error=str(exc))
        if self._reachable and not self.closed:  # a one-off API error, not an outage: retry soon
            asyncio.get_running_loop().call_later(RECONNECT_INTERVAL_S, self._retry_deferred)

    def _retry_deferred(self) -> None:
        if not self.closed and (self._watch is None or self._watch.done()):
            self._watch = asyncio.get_running_loop().create_task(self._watch_daemon(), name="docker-watch")

    # -- lifecycle --

    async def start(self) -> None:
        """Connect to the daemon, check the runtime is registered, reap orphan containers."""
        self._client, self._ping_client = await self._call(self._connect_sync)
        version = self._client.api.api_version
        self._oom = OomEvents(lambda: docker.from_env(timeout=API_TIMEOUT_S, version=version).api,
                              f"{ENGINE_LABEL}={self.engine_id}")
        self._oom.start()
        removed = await self._call(self._reap_sync, self.reap, True)
        self._reaper = asyncio.get_running_loop().create_task(self._reap_dead_owners(), name="docker-reaper")
        log.info("docker_backend_started", engine_id=self.engine_id, docker_host=self._where, runtime=self.runtime,
                 reap=self.reap, reaped=len(removed))

    def _connect_sync(self) -> tuple[docker.DockerClient, docker.DockerClient]:
        where = self._where
        try:
            client = docker.from_env(timeout=API_TIMEOUT_S)
            info = client.info()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise BackendError(
                f"no Docker daemon reachable at {where} ({_root_cause(exc)}); start one (scripts/ensure-docker) "
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

    def _reap_sync(self, mode: Literal["dead-owners", "all"], at_start: bool) -> list[str]:
        """Remove the engine's orphan containers: all of them (mode "all"), or those whose owner is dead.

        Containers labelled with this engine's own id are orphans only at start-up (left by an
        engine with the same id); later they are this engine's workers, some still being created.
        """
        removed = []
        # Engine labels on an image are inherited by every container run from it (a user's or a
        # benchmark's `docker run`); only containers that also name an engine are an engine's workers.
        workers = {"label": [f"{MANAGED_LABEL}=true", ENGINE_LABEL]}
        for summary in self._api.containers(all=True, filters=workers):
            labels = summary.get("Labels") or {}
            mine = labels.get(ENGINE_LABEL) == self.engine_id
            if mine and not at_start:
                continue
            if mode == "all" or mine or not _owner_alive(labels.get(OWNER_LABEL)):
                if self._remove_container_sync(summary["Id"]):
                    removed.append(summary["Id"])
        return removed

    def _remove_container_sync(self, container_id: str) -> bool:
        """Remove one container with force; False if it was already gone (or being removed)."""
        try:
            self._api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            self._forget(container_id)
            return False
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # already being removed
                return False
            raise BackendError(f"cannot remove container {container_id[:12]}: {exc.explanation or exc}") from exc
        self._forget(container_id)
        return True

    def _remove_or_defer_sync(self, container_id: str) -> None:
        """Remove a container from a worker thread; if the daemon will not, leave it to the watch task."""
        try:
            self._remove_container_sync(container_id)
        except (BackendError, docker.errors.DockerException, requests.exceptions.RequestException):
            self._deferred.add(container_id)

    async def healthy(self) -> bool:
        """Whether the daemon answers a ping within PING_TIMEOUT_S (for /readyz)."""
        pinger = self._ping_client
        if pinger is None or self.closed:
            return False
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(self._health_executor, pinger.ping), PING_TIMEOUT_S + 1)
        except (requests.exceptions.RequestException, docker.errors.DockerException, asyncio.TimeoutError) as exc:
            self._unreachable(exc)
            return False
        if not self._reachable:  # back: the watch task reconciles, then marks it reachable
            self._retry_deferred()
        return self._reachable

    async def _watch_daemon(self) -> None:
        """Until the daemon answers again: ping it; then remove what could not be removed meanwhile."""
        while not self.closed:
            if not self._reachable:
                await asyncio.sleep(RECONNECT_INTERVAL_S)
            try:
                removed = await self._call(self._reconcile_sync)
            except DockerUnreachable:
                continue
            except BackendError as exc:  # it answers but refuses: close() or the next start-up retries
                log.warning("docker_reconcile_failed", error=str(exc))
                removed = []
            if not self._reachable:
                log.info("docker_reachable_again", docker_host=self._where, removed=len(removed))
            self._reachable = True
            return

    def _reconcile_sync(self) -> list[str]:
        """Remove the deferred containers, and this engine's containers it does not know (their create
        answer was lost with the daemon); not those being created right now."""
        self._api.ping()
        removed = []
        stale = set(self._deferred)
        creating = {f"/{name}" for name in set(self._creating)}
        for summary in self._api.containers(all=True, filters={"label": f"{ENGINE_LABEL}={self.engine_id}"}):
            if summary["Id"] not in self._containers and not creating.intersection(summary.get("Names") or []):
                stale.add(summary["Id"])
        for container_id in stale:
            if self._remove_container_sync(container_id):
                removed.append(container_id)
            self._forget(container_id)
        return removed

    async def _reap_dead_owners(self) -> None:
        """Every REAP_INTERVAL_S: remove containers of engine processes that died (an engine killed
        mid-create can leave one behind after the next engine's start-up reap)."""
        while True:
            await asyncio.sleep(REAP_INTERVAL_S)
            if not self._reachable:
                continue
            try:
                removed = await self._call(self._reap_sync, "dead-owners", False)
            except BackendError as exc:
                log.warning("docker_reap_failed", error=str(exc))
                continue
            if removed:
                log.info("docker_orphans_reaped", removed=len(removed))

    async def close(self) -> None:
        """Remove every container this backend started (and any labelled with this engine id)."""
        if self.closed:
            return
        for task in (self._watch, self._reaper):
            if task is not None:
                task.cancel()
        if self._oom is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._oom.close)
        for worker in list(self._workers.values()):
            if worker._protocol.transport is not None:
                worker._protocol.transport.close()
        if self._client is not None:
            try:
                await self._call(self._remove_all_sync)
            except BackendError as exc:
                log.error("docker_cleanup_incomplete", error=str(exc), left=len(self._containers | self._deferred),
                          advice="the next engine to start on this daemon removes them (their owner is dead by then)")
            client, self._client = self._client, None
            await self._call(client.close)
        if self._ping_client is not None:
            self._ping_client.close()
            self._ping_client = None
        self.closed = True
        self._executor.shutdown(wait=True)
        self._health_executor.shutdown(wait=True)
        for task in (self._watch, self._reaper):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _remove_all_sync(self) -> None:
        ids = set(self._containers) | set(self._deferred)
        for summary in self._api.containers(all=True, filters={"label": f"{ENGINE_LABEL}={self.engine_id}"}):
            ids.add(summary["Id"])
        for container_id in ids:
            self._remove_container_sync(container_id)

    # -- images --

    async def prepare(self, spec: WorkerSpec, progress: ProgressFn | None = None) -> WorkerSpec:
        """Build (or reuse) the base, runner and service images; returns the spec with `image` set."""
        async with self._prepare_lock:
            image = await self._call(self._prepare_sync, spec, progress)
        return dataclasses.replace(spec, image=image)

    def _prepare_sync(self, spec: WorkerSpec, progress: ProgressFn | None) -> str:
        client = self._client
        if client is None:
            raise BackendError("the docker backend is not started")
        runner = images.ensure_runner_image(client, spec.runtime, progress, base_image=self.base_image)
        return images.ensure_service_image(client, spec.service, Path(spec.project_root), runner, progress)

    # -- workers --

    async def spawn(self, spec: WorkerSpec, max_frame_bytes: int) -> WorkerChannel:
        """Create, verify, attach and start one worker container; returns once the channel is open."""
        if spec.image is None:
            raise BackendError(f"service {spec.service}: no image to run; call prepare() first")
        created = asyncio.ensure_future(self._call(self._create_sync, spec))
        try:
            container_id, name, sock = await asyncio.shield(created)
        except asyncio.CancelledError:
            # The create runs on in its thread: remove whatever it makes once it finishes, and wait for
            # that, so a closed pool (a replaced service) has no container left when close() returns.
            # A second cancellation ends the wait, not the removal.
            await asyncio.shield(asyncio.ensure_future(self._discard_created(created)))
            raise
        try:
            protocol = _AttachProtocol(max_frame_bytes)
            loop = asyncio.get_running_loop()
            await loop.create_connection(lambda: protocol, sock=sock)
        except BaseException:
            sock.close()
            await asyncio.shield(self._call(self._remove_or_defer_sync, container_id))
            raise
        worker = DockerWorker(self, container_id, name, protocol)
        self._workers[container_id] = worker
        return worker

    async def _discard_created(self, created: asyncio.Future[tuple[str, str, socket.socket]]) -> None:
        try:
            container_id, _, sock = await created
        except BaseException:  # the create failed (and removed its container) or was itself cancelled
            return
        sock.close()
        if not self.closed:
            with contextlib.suppress(Exception):  # closing meanwhile: close() removes it instead
                await self._call(self._remove_or_defer_sync, container_id)

    def _create_sync(self, spec: WorkerSpec) -> tuple[str, str, socket.socket]:
        api = self._api
        expected = self._host_config(spec)
        name = f"engine-{images._repo_name(spec.service)}-{spec.runtime}-{uuid.uuid4().hex[:10]}"
        labels = {
            MANAGED_LABEL: "true",
            ENGINE_LABEL: self.engine_id,
            OWNER_LABEL: self._owner,
            SERVICE_LABEL: spec.service,
            BUILD_LABEL: spec.build_id,
            RUNTIME_LABEL: spec.runtime,
            OCI_RUNTIME_LABEL: self.runtime,
        }
        self._creating.add(name)
        try:
            created = api.create_container(
                spec.image, name=name, user=WORKER_USER, working_dir="/tmp", labels=labels,
                stdin_open=True, tty=False, host_config=api.create_host_config(**expected),
            )
            container_id = created["Id"]
            self._containers.add(container_id)
        except docker.errors.ImageNotFound as exc:
            raise BackendError(f"service {spec.service}: image {spec.image} is missing; prepare() builds it") from exc
        except docker.errors.DockerException as exc:
            raise BackendError(f"service {spec.service}: cannot create a worker container: {exc}") from exc
        finally:
            self._creating.discard(name)
        try:
            host_config = api.inspect_container(container_id)["HostConfig"]
            problems = hardening_problems(host_config, spec, self.runtime, self.log_driver)
            if created.get("Warnings"):
                problems += [f"docker warned: {w}" for w in created["Warnings"]]
            if problems:
                raise BackendError(
                    f"service {spec.service}: Docker did not apply the worker limits ({'; '.join(problems)}); "
                    "refusing to run the worker without them"
                )
            raw = api.attach_socket(container_id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
            sock = _detach_socket(raw)
            try:
                api.start(container_id)
            except BaseException:
                sock.close()
                raise
        except BaseException as exc:
            self._remove_or_defer_sync(container_id)
            if isinstance(exc, docker.errors.DockerException):
                raise BackendError(f"service {spec.service}: cannot start a worker container: {exc}") from exc
            raise
        return container_id, name, sock

    def _host_config(self, spec: WorkerSpec) -> dict[str, Any]:
        """The create_host_config() arguments of one worker: the hardening of DESIGN.md, limits from the spec."""
        limits = spec.limits
        if self.log_driver == "json-file":
            log_config = docker.types.LogConfig(type="json-file", config={"max-size": LOG_MAX_BYTES, "max-file": "1"})
        else:
            log_config = docker.types.LogConfig(type="none", config={})
        return dict(
            network_mode="none",
            read_only=True,
            tmpfs={"/tmp": f"size={limits.tmpfs_bytes},mode=1777,noexec,nosuid,nodev"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            privileged=False,
            pids_limit=limits.pids,
            mem_limit=limits.memory_bytes,
            memswap_limit=limits.memory_bytes,
            nano_cpus=int(limits.cpus * 1e9),
            ulimits=[
                docker.types.Ulimit(name="nofile", soft=limits.nofile, hard=limits.nofile),
                docker.types.Ulimit(name="fsize", soft=limits.fsize_bytes, hard=limits.fsize_bytes),
                docker.types.Ulimit(name="core", soft=0, hard=0),
            ],
            init=True,
            log_config=log_config,
            runtime=self.runtime,
            ipc_mode="private",
            cgroupns="private",
        )


def hardening_problems(host_config: dict[str, Any], spec: WorkerSpec, runtime: str, log_driver: str) -> list[str]:
    """Every way a created container's HostConfig falls short of the worker hardening (empty = all in force)."""
    limits = spec.limits
    problems: list[str] = []

    def expect(key: str, want: Any) -> None:
        got = host_config.get(key)
        if got != want:
            problems.append(f"{key} is {got!r}, expected {want!r}")

    expect("Memory", limits.memory_bytes)
    expect("MemorySwap", limits.memory_bytes)
    expect("NanoCpus", int(limits.cpus * 1e9))
    expect("PidsLimit", limits.pids)
    expect("ReadonlyRootfs", True)
    expect("NetworkMode", "none")
    expect("Privileged", False)
    expect("Init", True)
    expect("Runtime", runtime)
    if "ALL" not in (host_config.get("CapDrop") or []):
        problems.append(f"CapDrop is {host_config.get('CapDrop')!r}, expected ALL")
    if host_config.get("CapAdd"):
        problems.append(f"CapAdd is {host_config.get('CapAdd')!r}, expected none")
    if not any(opt in ("no-new-privileges", "no-new-privileges:true") for opt in host_config.get("SecurityOpt") or []):
        problems.append(f"SecurityOpt is {host_config.get('SecurityOpt')!r}, expected no-new-privileges")
    tmpfs = (host_config.get("Tmpfs") or {}).get("/tmp", "")
    for option in ("noexec", "nosuid", "nodev", f"size={limits.tmpfs_bytes}"):
        if option not in tmpfs.split(","):
            problems.append(f"Tmpfs /tmp is {tmpfs!r}, missing {option}")
    ulimits = {u.get("Name"): (u.get("Soft"), u.get("Hard")) for u in host_config.get("Ulimits") or []}
    for name, value in (("nofile", limits.nofile), ("fsize", limits.fsize_bytes), ("core", 0)):
        if ulimits.get(name) != (value, value):
            problems.append(f"ulimit {name} is {ulimits.get(name)!r}, expected {value}")
    if host_config.get("Binds") or host_config.get("Mounts") or host_config.get("VolumesFrom"):
        problems.append("the container has host mounts")
    for key in ("PidMode", "IpcMode", "UTSMode", "UsernsMode", "CgroupnsMode"):
        if host_config.get(key) == "host":
            problems.append(f"{key} is host")
    if host_config.get("Devices"):
        problems.append("the container has host devices")
    if (host_config.get("LogConfig") or {}).get("Type") != log_driver:
        problems.append(f"LogConfig is {host_config.get('LogConfig')!r}, expected {log_driver}")
    return problems


def _detach_socket(raw: Any) -> socket.socket:
    """Take the attach connection's socket away from docker-py, as a plain socket asyncio can own.

    docker-py 7 returns a `socket.SocketIO` for unix and plain tcp daemons (its `_sock` is the
    socket). The fd is duplicated and docker-py's side closed, so asyncio alone owns the
    connection and closing it really closes it. Attaching before start means nothing was read
    into docker-py's buffers past the HTTP upgrade.
    """
    sock = getattr(raw, "_sock", raw)
    if not isinstance(sock, socket.socket):
        raise BackendError(f"unexpected attach socket type {type(raw).__name__} from the docker SDK")
    owned = sock.dup()
    response = getattr(raw, "_response", None)
    for close in (response.close if response is not None else None, raw.close, sock.close):
        if close is not None:
            try:
                close()
            except (OSError, ValueError):  # already closed by the one before
                pass
    owned.setblocking(False)
    return owned


def _root_cause(exc: BaseException) -> str:
    """The innermost reason in a docker/requests/urllib3 error chain, as a short phrase."""
    queue: list[BaseException] = [exc]
    seen: set[int] = set()
    timed_out = False
    while queue and len(seen) < 32:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        timed_out = timed_out or isinstance(current, (TimeoutError, requests.exceptions.Timeout))
        queue += [arg for arg in current.args if isinstance(arg, BaseException)]
        queue += [e for e in (current.__cause__, current.__context__) if e is not None]
    return "timed out" if timed_out else " ".join(str(exc).split())[:300]


# --- orphan ownership --------------------------------------------------------------------------


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        return "noboot"


def _start_ticks(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, starttime


def _owner_token(pid: int | None = None) -> str:
    """Identifies this engine process: host, boot, pid and its start time (pids get reused)."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}/{_boot_id()}/{pid}/{_start_ticks(pid) or 0}"


def _owner_alive(token: str | None) -> bool:
    """Whether the engine process named by an owner label is still running.

    Containers from another host are assumed alive: this engine cannot judge them. Those from an
    earlier boot of this host, or without an owner label, are orphans.
    """
    if not token:
        return False
    parts = token.split("/")
    if len(parts) != 4:
        return False
    host, boot, pid, ticks = parts
    if host != socket.gethostname():
        return True
    if boot != _boot_id():
        return False
    try:
        return _start_ticks(int(pid)) == ticks
    except ValueError:
        return False
