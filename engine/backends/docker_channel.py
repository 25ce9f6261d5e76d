"""The docker backend's worker channel: one Unix socket per worker, outside dockerd.

The engine makes a fresh directory per worker (owned by the worker's uid 10001, mode 0700, when
the engine runs as root), listens on a socket in it, and bind-mounts the directory read-only at
`CHANNEL_DIR` into that container alone. The runner connects at start-up, before any handler code
is loaded, and says `{"type":"hello","token":...}` with the token the engine gave the container;
the engine accepts exactly that one connection, then closes the listener and unlinks the socket
at once, so a second connect (from a handler) finds nothing to connect to. From then on the
frames of docs/protocol.md travel over that connection, which neither dockerd nor the
containerd shim relays: a dockerd restart (with live-restore) does not touch a warm worker.

The peer is proved by the token, not by peer credentials: under gVisor the host side of the
connection is the sandbox's, with uid 0. A leaked token is worthless once the one connection is
accepted.

The runner's own stderr (crash output) still comes through the container's attach socket, read
into a bounded tail; before the runner connected, that socket's end means the container exited.

Directories live under `<root>/<engine id>/` with an `owner` file (docker_reaper's owner token):
removed with their worker, all at close, and at the next start-up when the owning engine died.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import secrets
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from engine.backends.docker_stream import STDERR, AttachProtocol, StderrTail, StreamDemux
from engine.errors import ChannelClosed, ProtocolError

log = structlog.get_logger("engine.docker")

CHANNEL_DIR = "/run/functions-channel"  # where a worker sees its channel directory (read-only)
SOCKET_NAME = "sock"
SOCKET_ENV = "RUNNER_CHANNEL_SOCKET"  # the runner connects here at start-up (and removes the variable)
TOKEN_ENV = "RUNNER_CHANNEL_TOKEN"  # what its hello frame must carry (also removed from its environment)
WORKER_UID = 10001  # docker_hardening.WORKER_USER
HELLO_MAX_BYTES = 1024  # the hello frame is tiny; a longer first line is refused

OWNER_FILE = "owner"
UNOWNED_GRACE_S = 60.0  # a directory without an owner file this young may be another engine's, being made


def _younger_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime < seconds
    except OSError:
        return True


def channels_root() -> Path:
    """Where the per-worker directories live: short (AF_UNIX paths are limited to 107 bytes)."""
    configured = os.environ.get("ENGINE_CHANNEL_ROOT")
    if configured:
        return Path(configured)
    if os.geteuid() == 0:
        return Path("/run/functions-engine/ch")
    return Path(tempfile.gettempdir()) / f"functions-engine-{os.geteuid()}" / "ch"


@dataclass(frozen=True)
class ChannelDir:
    """One worker's channel directory on the host, and the token its runner must present."""

    host_dir: Path
    token: str

    @property
    def socket_path(self) -> Path:
        return self.host_dir / SOCKET_NAME

    @property
    def bind(self) -> str:
        """The container's only bind mount: this directory, read-only, at CHANNEL_DIR."""
        return f"{self.host_dir}:{CHANNEL_DIR}:ro"

    @property
    def environment(self) -> dict[str, str]:
        return {SOCKET_ENV: f"{CHANNEL_DIR}/{SOCKET_NAME}", TOKEN_ENV: self.token}


class ChannelDirs:
    """This engine's channel directories: made per worker, removed with it, reaped when orphaned."""

    def __init__(self, engine_id: str, owner: str, root: Path | None = None) -> None:
        self.root = root or channels_root()
        self.engine_dir = self.root / engine_id
        self.owner = owner

    def reap_sync(self, owner_alive: object) -> list[Path]:
        """Remove the engine directories whose owner process is dead (left by a killed engine)."""
        removed: list[Path] = []
        try:
            entries = list(self.root.iterdir())
        except FileNotFoundError:
            return removed
        for entry in entries:
            try:
                owner = (entry / OWNER_FILE).read_text().strip()
            except OSError:
                owner = ""
            if owner == self.owner or (owner and owner_alive(owner)):  # type: ignore[operator]
                continue
            if not owner and _younger_than(entry, UNOWNED_GRACE_S):  # another engine making its directory
                continue
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        return removed

    def make_sync(self, name: str) -> tuple[ChannelDir, socket.socket]:
        """A fresh directory for worker `name` and a listening socket in it (non-blocking)."""
        if not self.engine_dir.is_dir():
            self.root.mkdir(mode=0o711, parents=True, exist_ok=True)
            # Made whole, then renamed into place: a reaper never sees it without its owner.
            staging = Path(tempfile.mkdtemp(prefix=".new-", dir=self.root))
            staging.chmod(0o711)
            (staging / OWNER_FILE).write_text(self.owner + "\n")
            try:
                staging.rename(self.engine_dir)
            except OSError:  # made meanwhile by this engine's other thread
                shutil.rmtree(staging, ignore_errors=True)
        host_dir = self.engine_dir / name
        host_dir.mkdir(mode=0o700)
        channel = ChannelDir(host_dir, secrets.token_hex(16))
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(channel.socket_path))
            listener.listen(1)
            listener.setblocking(False)
            if os.geteuid() == 0:  # only the worker's uid may enter the directory and connect
                os.chown(host_dir, WORKER_UID, WORKER_UID)
                os.chown(channel.socket_path, WORKER_UID, WORKER_UID)
                os.chmod(channel.socket_path, 0o600)
            else:  # the engine cannot give it away: anyone may connect, but only the token is accepted
                os.chmod(host_dir, 0o711)
                os.chmod(channel.socket_path, 0o666)
        except BaseException:
            listener.close()
            shutil.rmtree(host_dir, ignore_errors=True)
            raise
        return channel, listener

    @staticmethod
    def remove_sync(channel: ChannelDir) -> None:
        shutil.rmtree(channel.host_dir, ignore_errors=True)

    def remove_all_sync(self) -> None:
        shutil.rmtree(self.engine_dir, ignore_errors=True)


# --- the connection, driven by asyncio ---------------------------------------------------------


class SocketProtocol(AttachProtocol):
    """The channel socket: raw newline-delimited frames (no Docker multiplexing)."""

    def data_received(self, data: bytes) -> None:
        if self.error is not None:
            return
        try:
            self.stdout.feed(data)
        except Exception as exc:  # FrameTooLarge
            self.error = exc
            self._pause_reading()
        if self.stdout.pending_bytes > self._max_pending:
            self._pause_reading()
        self._wake_reader()


class StderrProtocol(asyncio.Protocol):
    """The container's attach socket, stderr only: crash output into a bounded tail; its end is noted."""

    def __init__(self) -> None:
        self.demux = StreamDemux()
        self.tail = StderrTail()
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        for stream, payload in self.demux.feed(data):
            if stream == STDERR:
                self.tail.feed(payload)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ended.done():
            self.ended.set_result(None)


class DirectStream:
    """One worker's protocol stream over its channel socket, connected lazily (the bootstrap
    deadline covers the runner's connect); send/read_line wait for the connection."""

    def __init__(self, worker_id: str, channel: ChannelDir, listener: socket.socket,
                 stderr: StderrProtocol | None, max_frame_bytes: int) -> None:
        self.worker_id = worker_id
        self.channel = channel
        self._listener: socket.socket | None = listener
        self._stderr = stderr
        self._protocol = SocketProtocol(max_frame_bytes)
        self._closed = False
        self._connected = asyncio.get_running_loop().create_task(self._connect(), name=f"channel-accept-{worker_id}")
        self._connected.add_done_callback(lambda task: task.cancelled() or task.exception())

    @property
    def connected(self) -> bool:
        return self._connected.done() and not self._connected.cancelled() and self._connected.exception() is None

    def waiting_for(self) -> str | None:
        """What the channel still waits for, for a bootstrap timeout's message."""
        if self._connected.done():
            return None
        return (f"the runner never connected to its channel socket {self.channel.socket_path} "
                f"(seen in the container as {CHANNEL_DIR}/{SOCKET_NAME})")

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        listener = self._listener
        assert listener is not None
        accept = asyncio.ensure_future(loop.sock_accept(listener))
        waits: list[asyncio.Future[object]] = [accept]  # type: ignore[list-item]
        if self._stderr is not None:
            waits.append(self._stderr.ended)  # type: ignore[arg-type]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._close_listener()  # exactly one connection: a second connect finds no socket
            if not accept.done():
                accept.cancel()
        if not accept.done() or accept.cancelled():
            raise ChannelClosed(f"worker {self.worker_id}: the container exited before its runner connected "
                                f"to the channel socket")
        conn, _ = accept.result()
        try:
            conn.setblocking(False)
            await loop.create_connection(lambda: self._protocol, sock=conn)
        except BaseException:
            conn.close()
            raise
        if self._closed:
            self._close_transport()
            raise ChannelClosed(f"worker {self.worker_id}: its channel is closed")
        hello = await self._read_line()
        try:
            message = json.loads(hello)
            token = message.get("token") if isinstance(message, dict) and message.get("type") == "hello" else None
        except ValueError:
            token = None
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), self.channel.token.encode()):
            raise ProtocolError(f"worker {self.worker_id}: the first frame on its channel socket was not the "
                                f"runner's hello with its token; refusing the connection")

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
            try:
                self.channel.socket_path.unlink()
            except OSError:
                pass

    async def _ready(self) -> None:
        task = self._connected
        if not task.done():
            await asyncio.wait([task])  # a cancelled caller stops waiting, not the connect
        if task.cancelled():
            raise ChannelClosed(f"worker {self.worker_id}: its channel was closed before the runner connected")
        task.result()  # raises what the connect raised

    async def send(self, data: bytes) -> None:
        await self._ready()
        protocol = self._protocol
        if protocol.closed or protocol.transport is None or protocol.transport.is_closing():
            raise ChannelClosed(f"worker {self.worker_id}: its channel is closed")
        protocol.transport.write(data)
        await protocol.drain()

    async def read_line(self) -> bytes:
        await self._ready()
        return await self._read_line()

    async def _read_line(self) -> bytes:
        protocol = self._protocol
        stdout = protocol.stdout
        while not stdout.lines:
            if protocol.error is not None:
                raise protocol.error
            if protocol.closed:
                raise ChannelClosed(f"worker {self.worker_id}: its channel socket was closed")
            await protocol.wait_readable()
        line = stdout.pop()
        if not self._connected.done() and len(line) > HELLO_MAX_BYTES:
            raise ProtocolError(f"worker {self.worker_id}: a first frame of {len(line)} bytes is no hello")
        return line

    def stderr_tail(self) -> str:
        return self._stderr.tail.text() if self._stderr is not None else ""

    def _close_transport(self) -> None:
        if self._protocol.transport is not None:
            self._protocol.transport.close()
        else:
            self._protocol.connection_lost(None)

    def close(self) -> None:
        """Close the connection (the reader sees its end), the listener and the attach socket; idempotent."""
        self._closed = True
        if not self._connected.done():
            self._connected.cancel()
        self._close_listener()
        self._close_transport()
        if self._stderr is not None and self._stderr.transport is not None:
            self._stderr.transport.close()


async def open_stderr(sock: socket.socket) -> StderrProtocol:
    """Hand the attach socket (stderr only) to the event loop; the caller closes `sock` on failure."""
    protocol = StderrProtocol()
    await asyncio.get_running_loop().create_connection(lambda: protocol, sock=sock)
    return protocol
