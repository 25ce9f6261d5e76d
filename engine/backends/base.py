"""What a backend must provide: start a worker, give a byte channel to it, kill it.

The pool, the protocol client and the HTTP layer are shared; a backend only decides *where* the
runner process lives (a child process, a container) and how to talk to its stdin/stdout.
"""

from __future__ import annotations

import abc
import contextlib
import enum
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

#: Receives human-readable progress lines for long work (image builds).
ProgressFn = Callable[[str], None]
#: Held around building an image for content (`key`, its hash) the daemon does not have yet.
BuildGuard = Callable[[str], AbstractAsyncContextManager[None]]


def unguarded(_key: str) -> AbstractAsyncContextManager[None]:
    """One engine alone: its own build lock is enough."""
    return contextlib.nullcontext()


class ExitKind(enum.StrEnum):
    """Why a worker's process ended, as far as the backend can tell."""

    RUNNING = "running"
    EXITED = "exited"  # exited by itself (exit code in ExitInfo.code)
    KILLED = "killed"  # killed by the engine
    OOM = "oom"  # killed by the memory limit
    SIGNALED = "signaled"  # killed by a signal the engine did not send


@dataclass(frozen=True)
class ExitInfo:
    kind: ExitKind
    code: int | None = None
    detail: str = ""

    def describe(self) -> str:
        """One line for a 502 body or a log: what happened to the worker."""
        if self.kind is ExitKind.OOM:
            return "the worker was killed because it hit its memory limit"
        if self.kind is ExitKind.EXITED:
            return f"the worker exited with code {self.code}" + (f": {self.detail}" if self.detail else "")
        if self.kind is ExitKind.SIGNALED:
            return f"the worker was killed by a signal ({self.detail or self.code})"
        if self.kind is ExitKind.KILLED:
            return "the worker was killed by the engine"
        return "the worker stopped answering"


@dataclass(frozen=True)
class WorkerLimits:
    """Resource limits of one worker; each backend enforces what it can and says what it cannot."""

    memory_bytes: int = 256 * 1024 * 1024
    cpus: float = 0.5
    pids: int = 64
    nofile: int = 256
    fsize_bytes: int = 64 * 1024 * 1024
    tmpfs_bytes: int = 64 * 1024 * 1024
    cpu_seconds: int = 3600  # process backend only: RLIMIT_CPU, a backstop against a spinning child


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a backend needs to start one worker of one pool."""

    engine_id: str  # this engine instance, for labels and orphan reaping
    service: str
    build_id: str  # content hash of the service build (code + deps + runner)
    runtime: str  # "python" or "node"
    project_root: Path  # on the host; the docker backend bakes it into the service image
    limits: WorkerLimits = field(default_factory=WorkerLimits)
    image: str | None = None  # docker: the service build image to run


class WorkerChannel(abc.ABC):
    """A started worker: its stdin/stdout as a line channel, plus the means to stop it."""

    worker_id: str

    @abc.abstractmethod
    async def send(self, data: bytes) -> None:
        """Write bytes to the runner's stdin (one or more complete frames)."""

    @abc.abstractmethod
    async def read_line(self) -> bytes:
        """The next line of the runner's stdout, without the newline.

        Raises FrameTooLarge for a line over the limit, ChannelClosed at end of stream.
        """

    @abc.abstractmethod
    async def kill(self) -> None:
        """Stop the worker at once and release everything it holds. Idempotent."""

    async def wait_removed(self) -> None:
        """Until everything the worker held is released for good (its container removed), however
        long that takes; kill() may return earlier, with the release still going on."""
        await self.kill()

    @abc.abstractmethod
    async def exit_info(self) -> ExitInfo:
        """Why the worker ended (call after the channel closed or kill); waits briefly for it."""

    def stderr_tail(self) -> str:
        """The last bytes the runner itself wrote to its stderr (crash output), for logs."""
        return ""

    def waiting_for(self) -> str | None:
        """What the channel itself still waits for before frames can flow (the runner connecting to
        its socket), for a bootstrap timeout's message; None when it is connected or has no such step."""
        return None


class Backend(abc.ABC):
    """Starts workers. One instance per engine; set up and torn down by the engine's lifecycle."""

    name: str
    isolation: str  # human-readable, logged at start-up and exposed on /metrics
    # Replicas sharing a store and a daemon set one that excludes the others (engine/control/buildlock.py),
    # so only one of them installs a given content's dependencies.
    build_guard: BuildGuard = staticmethod(unguarded)

    async def start(self) -> None:
        """Connect, check, and reap orphans left by an earlier engine."""

    async def prepare(self, spec: WorkerSpec, progress: ProgressFn | None = None) -> WorkerSpec:
        """Build whatever the service needs (an image) before its first worker; return the spec to spawn."""
        return spec

    @abc.abstractmethod
    async def spawn(self, spec: WorkerSpec, max_frame_bytes: int) -> WorkerChannel:
        """Start one worker process; returns once its stdin/stdout are connected."""

    async def healthy(self) -> bool:
        """Whether new workers can be started now (for /readyz)."""
        return True

    def unavailable(self) -> str | None:
        """Why workers can be neither started nor removed now, as far as the backend already knows
        (no I/O: a request must not wait to find out); None when nothing is known to be wrong."""
        return None

    async def close(self) -> None:
        """Remove every worker this backend started."""


