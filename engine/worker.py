"""One worker: the engine's side of the protocol over a backend's channel.

A reader task owns the channel's stdout for the worker's whole life, so a worker that dies while
idle is noticed at once (and replaced), and handler output is forwarded while the handler runs.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from engine import protocol
from engine.backends.base import ExitInfo, ExitKind, WorkerChannel
from engine.errors import BootstrapError, ChannelClosed, ProtocolError, WorkerError

log = structlog.get_logger("engine.worker")

_counter = itertools.count(1)


class WorkerState(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    DEAD = "dead"  # terminal


_ALLOWED = {
    WorkerState.STARTING: {WorkerState.IDLE, WorkerState.DEAD},
    WorkerState.IDLE: {WorkerState.BUSY, WorkerState.DEAD},
    WorkerState.BUSY: {WorkerState.IDLE, WorkerState.DEAD},
    WorkerState.DEAD: set(),
}


class InvocationTimeout(WorkerError):
    """The callback did not come before the deadline (→ 504)."""


@dataclass
class Invocation:
    """What the reader needs to attribute output to the invocation in flight."""

    id: str
    service: str
    function: str
    max_log_bytes: int
    log_bytes: int = 0
    log_bytes_dropped: int = 0
    result: asyncio.Future[protocol.Result] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    done: asyncio.Future[protocol.Done] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def expire(self) -> None:
        """The deadline passed before `result`: the waiting request gets InvocationTimeout (→ 504)."""
        if not self.result.done():
            self.result.set_exception(InvocationTimeout("the function did not call back before its time limit"))


class Worker:
    """A runner process behind a channel, with a state machine whose last state is DEAD."""

    def __init__(
        self,
        channel: WorkerChannel,
        service: str,
        on_dead: Callable[[Worker], None],
        lifecycle: asyncio.Semaphore | None = None,
    ) -> None:
        self.channel = channel
        self.id = channel.worker_id
        self.number = next(_counter)
        self.service = service
        self.state = WorkerState.STARTING
        self.started_at = self.idle_since = time.monotonic()
        self.retire_at = math.inf  # monotonic time after which the pool replaces it (max_worker_age_s)
        self.invocations = 0  # invocations sent to it (the one in flight included)
        self.ready: protocol.Ready | None = None
        self.death: str | None = None  # why it died, once DEAD
        self.death_detail: str | None = None  # what happened, when it died by itself (for 5xx bodies and logs)
        self.exit: ExitInfo | None = None  # how its process ended, when it ended by itself
        self._on_dead = on_dead
        # The pool's bound on its own backend calls (kill, exit status): shared by all its workers.
        self._lifecycle = lifecycle or asyncio.Semaphore(1)
        self._killing: asyncio.Task[None] | None = None
        self._current: Invocation | None = None
        self._boot: asyncio.Future[protocol.Ready] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read_loop(), name=f"worker-reader-{self.id}")

    def transition(self, new: WorkerState) -> None:
        if new not in _ALLOWED[self.state]:
            raise RuntimeError(f"worker {self.id}: illegal transition {self.state.value} → {new.value}")
        self.state = new
        if new is WorkerState.IDLE:
            self.idle_since = time.monotonic()

    @property
    def alive(self) -> bool:
        return self.state is not WorkerState.DEAD

    async def bootstrap(self, init: protocol.Init, timeout_s: float) -> protocol.Ready:
        """Send `init`, wait for `ready`; any other outcome is a BootstrapError and a dead worker.

        The timeout covers the write too: a runner that does not read its stdin cannot hold the
        start forever.
        """
        try:
            async with asyncio.timeout(timeout_s):
                await self.channel.send(protocol.encode_init(init))
                ready = await asyncio.shield(self._boot)
        except TimeoutError:
            waiting = self.channel.waiting_for()
            await self.kill("timeout")
            raise BootstrapError(
                f"worker did not answer init within bootstrap_timeout_s={timeout_s:g}s"
                + (f": {waiting}" if waiting else "")
            ) from None
        except WorkerError as exc:
            await self.kill("protocol" if isinstance(exc, ProtocolError) else "crash")
            raise BootstrapError(str(exc)) from exc
        self.ready = ready
        self.transition(WorkerState.IDLE)
        return ready

    async def invoke(self, frame: bytes, invocation: Invocation, deadline: float) -> protocol.Result:
        """Send one `invoke` and wait for its `result` until `deadline` (loop time); the pool made it BUSY.

        The deadline covers the write: a worker that stopped reading its stdin (a handler that
        patched the runner, a stopped process) blocks a large frame's write, and that is a 504
        like any other late callback, not a worker busy for good.
        """
        if self.state is not WorkerState.BUSY:
            raise RuntimeError(f"worker {self.id}: invoke while {self.state.value}")
        self._current = invocation
        self.invocations += 1
        timer = asyncio.get_running_loop().call_at(deadline, invocation.expire)  # a plain timer: cheapest
        try:
            try:
                async with asyncio.timeout_at(deadline):
                    await self.channel.send(frame)
            except TimeoutError:
                invocation.expire()  # the write did not finish in time: the same 504 as a late callback
            except (OSError, ConnectionError) as exc:
                raise ChannelClosed(f"could not write to the worker: {exc}") from exc
            return await invocation.result
        finally:
            timer.cancel()

    def end_invocation(self, invocation: Invocation) -> None:
        """`done` came (or never will): output from now on is not this invocation's."""
        if self._current is invocation:
            self._current = None

    async def kill(self, reason: str) -> None:
        """Stop the worker from outside. Idempotent; the reader notices the closed channel."""
        self.mark_dead(reason)
        if self._killing is None:
            # One first removal attempt per worker, within the pool's share of backend calls (not at
            # shutdown: then every worker goes at once and the backend removes whatever is left anyway).
            self._killing = asyncio.ensure_future(self._kill_channel(bounded=reason != "shutdown"))
        await asyncio.shield(self._killing)

    def mark_dead(self, reason: str) -> None:
        """DEAD now, for `reason` (once); the pool's on_dead removes it in the background, so a caller
        answering a client (504, 502) never waits for the backend."""
        if self.state is not WorkerState.DEAD:
            self.death = reason
            self.state = WorkerState.DEAD
            self._on_dead(self)

    async def _kill_channel(self, bounded: bool) -> None:
        if bounded:
            async with self._lifecycle:
                await self.channel.kill()
        else:
            await self.channel.kill()

    async def exit_info(self) -> ExitInfo:
        async with self._lifecycle:
            return await self.channel.exit_info()

    async def _read_loop(self) -> None:
        failure: WorkerError
        try:
            while True:
                self._dispatch(protocol.decode(await self.channel.read_line()))
        except WorkerError as exc:
            failure = exc
        except asyncio.CancelledError:
            failure = ChannelClosed("engine stopped reading")
        except Exception as exc:  # a bug here must not leave an invocation hanging
            log.exception("worker_reader_crashed", worker_id=self.id)
            failure = ProtocolError(f"engine could not read the worker: {exc!r}")
        died_by_itself = self.state is not WorkerState.DEAD
        if died_by_itself and isinstance(failure, ChannelClosed):
            # Ask why before cleaning up: removing a container erases its OOM flag and exit code.
            self.exit = await self.exit_info()
            failure = ChannelClosed(self.exit.describe())
        for future in self._pending():
            if not future.done():
                future.set_exception(failure)
                future.exception()  # mark retrieved: nobody may be waiting any more
        if died_by_itself and self.state is not WorkerState.DEAD:
            if isinstance(failure, ProtocolError):
                self.death = "protocol"
            else:
                self.death = "oom" if self.exit and self.exit.kind is ExitKind.OOM else "crash"
            self.death_detail = str(failure)
            self.state = WorkerState.DEAD
            self._on_dead(self)
            log.warning("worker_died", worker_id=self.id, service=self.service, reason=str(failure),
                        stderr=self.channel.stderr_tail()[-2000:] or None)
        await self.kill(self.death or "crash")

    def _pending(self) -> list[asyncio.Future]:  # type: ignore[type-arg]
        futures: list[asyncio.Future] = [self._boot]  # type: ignore[type-arg]
        if self._current is not None:
            futures += [self._current.result, self._current.done]
        return futures

    def _dispatch(self, message: protocol.Ready | protocol.InitErrorMsg | protocol.Log | protocol.Result | protocol.Done) -> None:
        current = self._current
        if isinstance(message, protocol.Log):
            self._handler_log(message, current)
        elif isinstance(message, protocol.Ready):
            if self._boot.done():
                raise ProtocolError("worker sent `ready` twice")
            if message.protocol != protocol.PROTOCOL_VERSION:
                raise ProtocolError(
                    f"worker speaks protocol {message.protocol}, engine speaks {protocol.PROTOCOL_VERSION}; rebuild the runner image"
                )
            self._boot.set_result(message)
        elif isinstance(message, protocol.InitErrorMsg):
            raise BootstrapError(f"worker could not start: {message.message}")
        elif isinstance(message, protocol.Result):
            if current is None or message.id != current.id or current.result.done():
                raise ProtocolError(f"unexpected `result` for invocation {message.id}")
            current.result.set_result(message)
        elif isinstance(message, protocol.Done):
            if current is None or message.id != current.id or not current.result.done() or current.done.done():
                raise ProtocolError(f"unexpected `done` for invocation {message.id}")
            current.done.set_result(message)

    def _handler_log(self, message: protocol.Log, current: Invocation | None) -> None:
        if current is None or message.id != current.id:
            if message.id is None and current is None:
                log.info("handler_log", service=self.service, worker_id=self.id, stream_level=message.level,
                         message=message.message[:4096], invocation_id=None, function=None)
            return  # output of an earlier invocation on a worker that claimed to be clean: dropped
        size = len(message.message.encode("utf-8", "replace"))
        if current.log_bytes + size > current.max_log_bytes:
            current.log_bytes_dropped += size
            return
        current.log_bytes += size
        log.log(
            _LEVEL_NUMBERS[message.level], "handler_log", invocation_id=current.id, service=current.service,
            function=current.function, stream_level=message.level, message=message.message,
        )


# Handler output is never filtered by the engine's own log level: debug lines are logged at info.
_LEVEL_NUMBERS = {"debug": 20, "info": 20, "warn": 30, "error": 40}
