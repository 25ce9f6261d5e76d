"""Everything the docker backend starts, it can find and remove: labels, owners, reaping, the daemon watch.

Every container carries labels that say it is the engine's and which engine process owns it
(host, boot, pid, start time), so start-up can reap what a dead engine left behind, a periodic
sweep removes what an engine killed mid-create leaves, and close() removes everything this one made.

A worker's container is removed in the background until it is gone: a removal that fails is
retried with a bounded back-off (REMOVE_RETRY_FIRST_S doubling to REMOVE_RETRY_MAX_S), one
`docker_remove_retry` log line per retry naming the container and the error, for as long as the
engine runs; the pool counts the worker against `max_workers` until then.

The daemon may go away while the engine runs (restarted, crashed, its socket gone). While it is
unreachable, the containers that could not be removed are remembered; a watch task pings the
daemon and, once it answers again, removes them and this engine's containers it does not know
(their create answer was lost with the daemon). Nothing waits on a dead daemon.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import docker
import docker.errors
import requests.exceptions
import structlog

from engine import images
from engine.errors import BackendError


log = structlog.get_logger("engine.docker")

MANAGED_LABEL = images.MANAGED_LABEL  # "true" on every container and image the engine makes
ENGINE_LABEL = "io.functions-engine.engine"  # the engine id that started the container
OWNER_LABEL = "io.functions-engine.owner"  # host/boot/pid/start-time of that engine process
SERVICE_LABEL = "io.functions-engine.service"
BUILD_LABEL = "io.functions-engine.build"
RUNTIME_LABEL = "io.functions-engine.runtime"  # the runner language: python, node
OCI_RUNTIME_LABEL = "io.functions-engine.oci-runtime"  # runc or runsc

RECONNECT_INTERVAL_S = 1.0  # how often an unreachable daemon is pinged until it answers again
REAP_INTERVAL_S = 60.0  # how often containers of dead engine processes are looked for while running
# A failed removal is retried after REMOVE_RETRY_FIRST_S, doubling up to REMOVE_RETRY_MAX_S between
# tries, until the container is gone: quick for a passing error, gentle on a daemon that keeps failing.
REMOVE_RETRY_FIRST_S = 0.5
REMOVE_RETRY_MAX_S = 10.0

ReapMode = Literal["dead-owners", "all"]
#: Runs one blocking docker call in the backend's executor; docker errors become BackendError.
CallFn = Callable[..., Awaitable[Any]]


class DockerUnreachable(BackendError):
    """The Docker daemon did not answer: its socket is gone, refuses connections or timed out."""


@dataclasses.dataclass
class Removal:
    """One container being removed: `tried` ends after the first attempt, `gone` once it is removed."""

    tried: asyncio.Future[None]
    gone: asyncio.Future[None]


class ContainerReaper:
    """The containers this engine made, until each is gone, and whether the daemon answers."""

    def __init__(
        self, engine_id: str, where: str, call: CallFn, api: Callable[[], docker.APIClient],
        on_forget: Callable[[str], None],
    ) -> None:
        self.engine_id = engine_id
        self.owner = owner_token()
        self._where = where  # DOCKER_HOST, for messages
        self._call = call
        self._api = api
        self._on_forget = on_forget  # the backend drops its worker of that container
        self.containers: set[str] = set()  # ids of containers this backend made and has not removed
        self.creating: set[str] = set()  # names of containers being created (their id is not known yet)
        self.deferred: set[str] = set()  # containers whose removal failed at least once; still retried
        self.reachable = True
        self.closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watch: asyncio.Task[None] | None = None  # pings an unreachable daemon until it is back
        self._sweeper: asyncio.Task[None] | None = None
        self._removals: dict[str, Removal] = {}  # container id -> its removal under way
        self._nappers: set[asyncio.Future[None]] = set()  # removals waiting to retry; woken when the daemon is back
        # Run by the periodic sweep too (blocking, in the executor): the backend's own leftovers of
        # dead engines that are not containers (their channel directories).
        self.sweep_also: Callable[[], Any] | None = None

    # -- bookkeeping --

    def forget(self, container_id: str) -> None:
        self.containers.discard(container_id)
        self.deferred.discard(container_id)
        self._on_forget(container_id)

    def unreachable(self, exc: BaseException) -> DockerUnreachable:
        """Note that the daemon stopped answering (once), start watching for it, and describe it."""
        if self.reachable and not self.closed:
            self.reachable = False
            log.error("docker_unreachable", docker_host=self._where, error=root_cause(exc))
        if (self._watch is None or self._watch.done()) and not self.closed:
            self._watch = asyncio.get_running_loop().create_task(self._watch_daemon(), name="docker-watch")
        return DockerUnreachable(f"the Docker daemon at {self._where} is unreachable ({root_cause(exc)})")

    def remove(self, container_id: str, name: str | None = None,
               remove_sync: Callable[[], Any] | None = None) -> Removal:
        """Remove a container until it is gone (idempotent); `remove_sync` raises BackendError to retry."""
        removal = self._removals.get(container_id)
        if removal is None:
            loop = asyncio.get_running_loop()
            tried: asyncio.Future[None] = loop.create_future()
            attempt = remove_sync or functools.partial(self.remove_sync, container_id)
            gone = loop.create_task(self._remove_until_gone(container_id, name or container_id[:12], attempt, tried),
                                    name=f"docker-remove-{container_id[:12]}")
            removal = self._removals[container_id] = Removal(tried, gone)
            gone.add_done_callback(lambda _: self._removals.pop(container_id, None))
        return removal

    async def _remove_until_gone(self, container_id: str, name: str, attempt: Callable[[], Any],
                                 tried: asyncio.Future[None]) -> None:
        delay, attempts = REMOVE_RETRY_FIRST_S, 0
        try:
            while not self.closed:  # once closed, close() makes the last attempt
                attempts += 1
                try:
                    await self._call(attempt)
                except Exception as exc:  # BackendError, or a bug: either way the container must still go
                    self.deferred.add(container_id)
                    log.warning("docker_remove_retry", container=name, container_id=container_id[:12],
                                error=str(exc), attempt=attempts, retry_in_s=delay)
                else:
                    self.deferred.discard(container_id)
                    if attempts > 1:
                        log.info("docker_removed_after_retries", container=name, container_id=container_id[:12],
                                 attempts=attempts)
                    return
                finally:
                    if not tried.done():
                        tried.set_result(None)
                await self._nap(delay)
                delay = min(delay * 2, REMOVE_RETRY_MAX_S)
        finally:
            if not tried.done():
                tried.set_result(None)

    async def _nap(self, delay: float) -> None:
        """Sleep `delay` seconds, or until the daemon answers again after an outage."""
        waker: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._nappers.add(waker)
        try:
            await asyncio.wait([waker], timeout=delay)
        finally:
            self._nappers.discard(waker)

    def _wake_removals(self) -> None:
        for waker in self._nappers:
            if not waker.done():
                waker.set_result(None)

    def retry_deferred(self) -> None:
        if not self.closed and (self._watch is None or self._watch.done()):
            self._watch = asyncio.get_running_loop().create_task(self._watch_daemon(), name="docker-watch")

    # -- removal (blocking: run through the executor) --

    def remove_sync(self, container_id: str) -> bool:
        """Remove one container with force; False if it was already gone (or being removed)."""
        try:
            self._api().remove_container(container_id, force=True)
        except docker.errors.NotFound:
            self.forget(container_id)
            return False
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # already being removed
                return False
            raise BackendError(f"cannot remove container {container_id[:12]}: {exc.explanation or exc}") from exc
        self.forget(container_id)
        return True

    def remove_or_defer_sync(self, container_id: str) -> None:
        """Remove a container from a worker thread; if the daemon will not, retry it from the event loop."""
        try:
            self.remove_sync(container_id)
        except (BackendError, docker.errors.DockerException, requests.exceptions.RequestException):
            self.deferred.add(container_id)
            if self._loop is not None and not self.closed:
                self._loop.call_soon_threadsafe(self.remove, container_id)

    def reap_sync(self, mode: ReapMode, at_start: bool) -> list[str]:
        """Remove the engine's orphan containers: all of them (mode "all"), or those whose owner is dead.

        Containers labelled with this engine's own id are orphans only at start-up (left by an
        engine with the same id); later they are this engine's workers, some still being created.
        """
        removed = []
        # Engine labels on an image are inherited by every container run from it (a user's or a
        # benchmark's `docker run`); only containers that also name an engine are an engine's workers.
        workers = {"label": [f"{MANAGED_LABEL}=true", ENGINE_LABEL]}
        for summary in self._api().containers(all=True, filters=workers):
            labels = summary.get("Labels") or {}
            mine = labels.get(ENGINE_LABEL) == self.engine_id
            if mine and not at_start:
                continue
            if mode == "all" or mine or not owner_alive(labels.get(OWNER_LABEL)):
                if self.remove_sync(summary["Id"]):
                    removed.append(summary["Id"])
        return removed

    def reconcile_sync(self) -> list[str]:
        """Remove the deferred containers, and this engine's containers it does not know (their create
        answer was lost with the daemon); not those being created right now."""
        api = self._api()
        api.ping()
        removed = []
        stale = set(self.deferred) - set(self._removals)  # those under way retry on their own
        listed = api.containers(all=True, filters={"label": f"{ENGINE_LABEL}={self.engine_id}"})
        # Listed first, then checked against the live sets: a create that finishes in between adds its
        # id to `containers` before it drops its name from `creating`, so it is in one or the other.
        for summary in listed:
            creating = {f"/{name}" for name in set(self.creating)}
            if summary["Id"] not in self.containers and not creating.intersection(summary.get("Names") or []):
                stale.add(summary["Id"])
        for container_id in stale:
            if self.remove_sync(container_id):
                removed.append(container_id)
            self.forget(container_id)
        return removed

    def remove_all_sync(self) -> None:
        """At close: every container this engine made or that carries its id."""
        ids = set(self.containers) | set(self.deferred)
        for summary in self._api().containers(all=True, filters={"label": f"{ENGINE_LABEL}={self.engine_id}"}):
            ids.add(summary["Id"])
        for container_id in ids:
            self.remove_sync(container_id)

    # -- background tasks --

    async def start(self, mode: ReapMode) -> list[str]:
        """Reap at start-up, then sweep for dead engines' containers every REAP_INTERVAL_S."""
        self._loop = asyncio.get_running_loop()
        removed = await self._call(self.reap_sync, mode, True)
        self._sweeper = asyncio.get_running_loop().create_task(self._reap_dead_owners(), name="docker-reaper")
        return removed

    async def _reap_dead_owners(self) -> None:
        """Every REAP_INTERVAL_S: remove containers of engine processes that died (an engine killed
        mid-create can leave one behind after the next engine's start-up reap)."""
        while True:
            await asyncio.sleep(REAP_INTERVAL_S)
            if not self.reachable:
                continue
            try:
                if self.sweep_also is not None:
                    await self._call(self.sweep_also)
                removed = await self._call(self.reap_sync, "dead-owners", False)
            except BackendError as exc:
                log.warning("docker_reap_failed", error=str(exc))
                continue
            if removed:
                log.info("docker_orphans_reaped", removed=len(removed))

    async def _watch_daemon(self) -> None:
        """Until the daemon answers again: ping it; then remove what could not be removed meanwhile."""
        while not self.closed:
            if not self.reachable:
                await asyncio.sleep(RECONNECT_INTERVAL_S)
            try:
                removed = await self._call(self.reconcile_sync)
            except DockerUnreachable:
                continue
            except BackendError as exc:  # it answers but refuses: close() or the next start-up retries
                log.warning("docker_reconcile_failed", error=str(exc))
                removed = []
            if not self.reachable:
                log.info("docker_reachable_again", docker_host=self._where, removed=len(removed))
            self.reachable = True
            self._wake_removals()
            return

    def stop(self) -> list[asyncio.Future[None]]:
        """Cancel the background tasks and the removals' retries (close() removes what is left);
        returns them for the caller to await once its executor is down."""
        tasks = [task for task in (self._watch, self._sweeper) if task is not None]
        tasks += [removal.gone for removal in self._removals.values()]
        for task in tasks:
            task.cancel()
        return tasks


def root_cause(exc: BaseException) -> str:
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


def owner_token(pid: int | None = None) -> str:
    """Identifies this engine process: host, boot, pid and its start time (pids get reused)."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}/{_boot_id()}/{pid}/{_start_ticks(pid) or 0}"


def owner_alive(token: str | None) -> bool:
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
