"""The worker's deadlines cover its writes (engine/worker.py), with a tiny fake runner that stops reading.

End to end (a handler that makes its real runner deaf) is in tests/test_pool_hostile.py; here the
fake channel's `send` never returns, as a write to a full pipe whose reader stopped would not.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from engine import protocol
from engine.backends.base import ExitInfo, ExitKind, WorkerChannel
from engine.errors import BootstrapError, ChannelClosed
from engine.worker import Invocation, InvocationTimeout, Worker, WorkerState


class _DeafChannel(WorkerChannel):
    """A runner whose stdin nobody reads once `deaf` is set: every write then waits forever."""

    worker_id = "fake-deaf"

    def __init__(self, deaf: bool) -> None:
        self.deaf = deaf
        self.killed = False
        self._lines: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def send(self, data: bytes) -> None:
        if self.deaf:
            await asyncio.Event().wait()
        if json.loads(data)["type"] == "init":
            self._lines.put_nowait(json.dumps({"type": "ready", "protocol": protocol.PROTOCOL_VERSION}).encode())

    async def read_line(self) -> bytes:
        line = await self._lines.get()
        if line is None:
            raise ChannelClosed("fake runner: stdout ended")
        return line

    async def kill(self) -> None:
        self.killed = True
        self._lines.put_nowait(None)

    async def exit_info(self) -> ExitInfo:
        return ExitInfo(ExitKind.KILLED)


def _init() -> protocol.Init:
    return protocol.Init(
        service="svc", project_root="/srv/project", functions=[], assets=[], env={},
        limits=protocol.Limits(max_log_bytes=1024, max_response_bytes=1024, max_frame_bytes=1024),
    )


async def test_bootstrap_timeout_covers_the_init_write():
    channel = _DeafChannel(deaf=True)
    worker = Worker(channel, "svc", lambda _w: None)
    started = time.monotonic()
    with pytest.raises(BootstrapError, match="bootstrap_timeout_s=0.2"):
        await worker.bootstrap(_init(), 0.2)
    assert time.monotonic() - started < 2
    assert worker.state is WorkerState.DEAD and channel.killed


async def test_the_invocation_deadline_covers_the_invoke_write():
    channel = _DeafChannel(deaf=False)
    worker = Worker(channel, "svc", lambda _w: None)
    await worker.bootstrap(_init(), 2)
    channel.deaf = True  # the runner stops reading after it said `ready`
    worker.transition(WorkerState.BUSY)
    loop = asyncio.get_running_loop()
    invocation = Invocation("inv-1", "svc", "fn", 1024, result=loop.create_future(), done=loop.create_future())
    frame = protocol.encode_invoke("inv-1", "fn", {"pad": "x" * 100_000}, {})
    started = time.monotonic()
    with pytest.raises(InvocationTimeout):
        await worker.invoke(frame, invocation, loop.time() + 0.2)
    assert time.monotonic() - started < 2
    await worker.kill("timeout")
