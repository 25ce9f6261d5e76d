"""engine/backends/docker.py: framing of the attach stream (pure), then workers on the real daemon.

The container tests run a tiny echo worker (tests' own image on top of the runner image) to prove
the channel, the hardening, kill, OOM and reaping independently of the runner; one test boots the
real runner from a service image made by prepare().
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import uuid
from pathlib import Path
from typing import AsyncIterator, Iterator

import docker
import docker.errors
import pytest

from engine import images
from engine.backends import docker as docker_mod
from engine.backends.base import ExitKind, WorkerLimits, WorkerSpec
from engine.backends.docker import DockerBackend, exit_from_state
from engine.backends.docker_hardening import hardening_problems, host_config
from engine.backends.docker_reaper import owner_alive, owner_token
from engine.backends.docker_stream import LineSplitter, StderrTail, StreamDemux
from engine.errors import BackendError, ChannelClosed, FrameTooLarge


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(payload)) + payload


# --- pure: framing -----------------------------------------------------------------------------


def test_demux_reassembles_frames_cut_at_every_offset() -> None:
    """However the socket cuts the stream (inside headers too), the payloads come out whole and in order."""
    stream = frame(1, b'{"a":1}\n') + frame(2, b"oops\n") + frame(1, b"") + frame(1, b'{"b":2}\n')
    for cut in range(1, len(stream)):
        demux = StreamDemux()
        pieces = demux.feed(stream[:cut]) + demux.feed(stream[cut:])
        out = b"".join(p for s, p in pieces if s == 1)
        err = b"".join(p for s, p in pieces if s == 2)
        assert (out, err) == (b'{"a":1}\n{"b":2}\n', b"oops\n")


def test_demux_byte_by_byte() -> None:
    """A stream fed one byte at a time still demultiplexes."""
    stream = frame(1, b"hello\n") + frame(2, b"err")
    demux = StreamDemux()
    pieces = [p for i in range(len(stream)) for p in demux.feed(stream[i : i + 1])]
    assert b"".join(p for s, p in pieces if s == 1) == b"hello\n"
    assert b"".join(p for s, p in pieces if s == 2) == b"err"


def test_line_splitter_joins_a_line_split_across_chunks() -> None:
    """A frame split across chunks is one line; several lines in one chunk are several."""
    splitter = LineSplitter(max_frame_bytes=100)
    splitter.feed(b'{"type":"re')
    assert not splitter.lines
    splitter.feed(b'ady"}\n{"type":"log"}\n{"x"')
    assert [splitter.pop(), splitter.pop()] == [b'{"type":"ready"}', b'{"type":"log"}']
    assert splitter.partial_bytes == 4
    splitter.feed(b":1}\n")
    assert splitter.pop() == b'{"x":1}'
    assert splitter.pending_bytes == 0


def test_line_splitter_refuses_a_line_over_the_limit() -> None:
    """A complete line longer than max_frame_bytes raises FrameTooLarge; exactly the limit is fine."""
    splitter = LineSplitter(max_frame_bytes=10)
    splitter.feed(b"x" * 10 + b"\n")
    assert splitter.pop() == b"x" * 10
    with pytest.raises(FrameTooLarge):
        splitter.feed(b"y" * 11 + b"\n")


def test_line_splitter_refuses_an_endless_line_while_reading() -> None:
    """Bytes without a newline beyond the limit fail as they arrive, without waiting for the newline."""
    splitter = LineSplitter(max_frame_bytes=10)
    splitter.feed(b"z" * 6)
    with pytest.raises(FrameTooLarge, match="without a newline"):
        splitter.feed(b"z" * 5)


def test_stderr_tail_is_bounded() -> None:
    """Only the last max_bytes of stderr are kept, however much the worker writes."""
    tail = StderrTail(max_bytes=16)
    for i in range(1000):
        tail.feed(f"line {i}\n".encode())
    assert tail.text() == "line 998\nline 999\n"[-16:]
    assert len(tail._buf) <= 32


# --- pure: exits, hardening check, ownership ---------------------------------------------------


def test_exit_from_state() -> None:
    """OOM wins; our kill is KILLED; >128 is a signal; else the exit code."""
    assert exit_from_state({"OOMKilled": True, "ExitCode": 137}, killed=True).kind is ExitKind.OOM
    assert exit_from_state({"ExitCode": 137}, killed=True).kind is ExitKind.KILLED
    signaled = exit_from_state({"ExitCode": 139}, killed=False)
    assert (signaled.kind, signaled.detail) == (ExitKind.SIGNALED, "SIGSEGV")
    exited = exit_from_state({"ExitCode": 3, "Error": ""}, killed=False)
    assert (exited.kind, exited.code) == (ExitKind.EXITED, 3)


def spec_for(image: str | None = None, **limits: int | float) -> WorkerSpec:
    return WorkerSpec(
        engine_id="test", service="svc-test", build_id="b1", runtime="python",
        project_root=Path("/nonexistent"), limits=WorkerLimits(**limits), image=image,  # type: ignore[arg-type]
    )


def test_hardening_problems_names_each_dropped_limit() -> None:
    """A HostConfig where Docker dropped limits is reported key by key."""
    spec = spec_for()
    good = _fake_host_config(spec)
    assert hardening_problems(good, spec, "runc", "none") == []
    bad = dict(good, MemorySwap=-1, PidsLimit=0, NetworkMode="default", CapDrop=None, Binds=["/:/host"])
    problems = "; ".join(hardening_problems(bad, spec, "runc", "none"))
    for word in ("MemorySwap", "PidsLimit", "NetworkMode", "CapDrop", "host mounts"):
        assert word in problems


def _fake_host_config(spec: WorkerSpec) -> dict:
    """The HostConfig Docker reports when it applies everything we ask (as create_host_config builds it)."""
    config = docker.types.HostConfig(version="1.41", **host_config(spec, "runc", "none"))
    config["Privileged"] = False  # the daemon reports it; docker-py only sends it when True
    config["Ulimits"] = [{"Name": u["Name"], "Soft": u["Soft"], "Hard": u["Hard"]} for u in config["Ulimits"]]
    return dict(config)


def test_owner_alive() -> None:
    """Our own process is alive; a dead pid, an earlier boot or no label is an orphan; other hosts are left alone."""
    me = owner_token()
    host, boot, _pid, _ticks = me.split("/")
    assert owner_alive(me)
    assert not owner_alive(f"{host}/{boot}/{2**22 + 7}/1")
    assert not owner_alive(f"{host}/oldboot/{os.getpid()}/{_ticks}")
    assert not owner_alive(None)
    assert owner_alive(f"other-host-{uuid.uuid4().hex}/{boot}/1/1")


# --- on the Docker daemon ----------------------------------------------------------------------

ECHO_WORKER = r'''
import json, os, resource, subprocess, sys
sys.path.insert(0, "/opt/runner")
from functions_runtime.socket_channel import connect_from_env
connect_from_env()  # the runner's own entry step: fds 0/1 become the engine's channel socket
sys.stderr.write("echo worker up\n"); sys.stderr.flush()
out = sys.stdout.buffer

def attempt(fn):
    try:
        fn()
        return "ok"
    except Exception as exc:
        return type(exc).__name__

def probe():
    status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
    def exec_tmp():
        with open("/tmp/t.sh", "w") as fh:
            fh.write("#!/bin/sh\ntrue\n")
        os.chmod("/tmp/t.sh", 0o755)
        subprocess.run(["/tmp/t.sh"], check=True)
    return {
        "uid": os.getuid(), "cap_eff": status["CapEff"].strip(), "no_new_privs": status.get("NoNewPrivs", "").strip(),
        "write_root": attempt(lambda: open("/opt/x", "w")), "write_tmp": attempt(lambda: open("/tmp/x", "w").write("x")),
        "exec_tmp": attempt(exec_tmp),
        "interfaces": sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:]),
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE), "fsize": resource.getrlimit(resource.RLIMIT_FSIZE),
        "core": resource.getrlimit(resource.RLIMIT_CORE), "env": sorted(os.environ),
    }

for line in sys.stdin.buffer:
    cmd = line.strip()
    if cmd.startswith(b"exit "):
        raise SystemExit(int(cmd.split()[1]))
    if cmd == b"bomb":
        hog = []
        while True:
            hog.append(b"x" * (1 << 20))
    if cmd.startswith(b"big "):
        out.write(b"x" * int(cmd.split()[1]) + b"\n")
    elif cmd == b"probe":
        out.write(json.dumps(probe()).encode() + b"\n")
    else:
        out.write(line)
    out.flush()
'''


@pytest.fixture(scope="module")
def client(docker_available: None) -> Iterator[docker.DockerClient]:
    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture(scope="module")
def runner_image(client: docker.DockerClient) -> str:
    return images.ensure_runner_image(client, "python", print)


@pytest.fixture(scope="module")
def echo_image(client: docker.DockerClient, runner_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway worker image: the runner image with an echo loop as its entrypoint."""
    context = tmp_path_factory.mktemp("echo-image")
    (context / "echo.py").write_text(ECHO_WORKER)
    (context / "Dockerfile").write_text(
        f"FROM {runner_image}\nCOPY echo.py /opt/echo.py\nENTRYPOINT [\"python3\", \"/opt/echo.py\"]\n"
    )
    tag = f"engine-test-echo:{uuid.uuid4().hex[:8]}"
    client.images.build(path=str(context), tag=tag, rm=True, forcerm=True, network_mode="none",
                        labels={images.MANAGED_LABEL: "true"})
    yield tag
    client.images.remove(tag, force=True)


@pytest.fixture
async def runc_backend(docker_available: None) -> AsyncIterator[DockerBackend]:
    backend = DockerBackend("runc", f"test-{uuid.uuid4().hex[:8]}")
    await backend.start()
    try:
        yield backend
    finally:
        await backend.close()


def container_exists(client: docker.DockerClient, container_id: str) -> bool:
    try:
        client.api.inspect_container(container_id)
        return True
    except docker.errors.NotFound:
        return False


@pytest.mark.docker
async def test_echo_round_trip(runc_backend: DockerBackend, echo_image: str) -> None:
    """A line sent on stdin comes back on stdout; the worker's stderr lands in stderr_tail()."""
    worker = await runc_backend.spawn(spec_for(echo_image), max_frame_bytes=1 << 20)
    try:
        for i in range(50):
            await worker.send(b'{"type":"ping","n":%d}\n' % i)
            assert await asyncio.wait_for(worker.read_line(), 30) == b'{"type":"ping","n":%d}' % i
        await worker.send(b"one\ntwo\n")
        assert [await worker.read_line(), await worker.read_line()] == [b"one", b"two"]
        assert "echo worker up" in worker.stderr_tail()
    finally:
        await worker.kill()


@pytest.mark.docker
async def test_hardening_is_in_force(runc_backend: DockerBackend, echo_image: str, client: docker.DockerClient) -> None:
    """HostConfig carries every limit, and inside the worker: uid 10001, no caps, no network, read-only root, noexec /tmp."""
    spec = spec_for(echo_image, memory_bytes=128 << 20, cpus=0.25, pids=48, nofile=100, fsize_bytes=1 << 20, tmpfs_bytes=8 << 20)
    worker = await runc_backend.spawn(spec, max_frame_bytes=1 << 20)
    try:
        attrs = client.api.inspect_container(worker.container_id)
        host = attrs["HostConfig"]
        assert hardening_problems(host, spec, "runc", "none", channel_bind=worker.stream.channel.bind) == []
        assert (host["Memory"], host["MemorySwap"], host["NanoCpus"], host["PidsLimit"]) == (128 << 20, 128 << 20, 250_000_000, 48)
        assert (host["NetworkMode"], host["ReadonlyRootfs"], host["CapDrop"], host["Init"]) == ("none", True, ["ALL"], True)
        assert attrs["Config"]["User"] == "10001:10001"
        # The one host mount: this worker's channel directory, read-only, at the channel path.
        assert [(m["Source"], m["Destination"], m["RW"]) for m in attrs["Mounts"]] == [
            (str(worker.stream.channel.host_dir), "/run/functions-channel", False)]
        labels = attrs["Config"]["Labels"]
        assert labels[docker_mod.ENGINE_LABEL] == runc_backend.engine_id
        assert (labels[docker_mod.SERVICE_LABEL], labels[docker_mod.BUILD_LABEL]) == ("svc-test", "b1")

        await worker.send(b"probe\n")
        inside = json.loads(await asyncio.wait_for(worker.read_line(), 30))
        assert inside["uid"] == 10001
        assert int(inside["cap_eff"], 16) == 0
        assert inside["no_new_privs"] == "1"
        assert inside["write_root"] in ("OSError", "PermissionError")  # EROFS / EACCES
        assert inside["write_tmp"] == "ok"
        assert inside["exec_tmp"] == "PermissionError"  # noexec
        assert inside["interfaces"] == ["lo"]
        assert inside["nofile"] == [100, 100] and inside["fsize"] == [1 << 20, 1 << 20] and inside["core"] == [0, 0]
        assert not any("TOKEN" in name or "SECRET" in name for name in inside["env"])
    finally:
        await worker.kill()


@pytest.mark.docker
async def test_kill_removes_the_container(runc_backend: DockerBackend, echo_image: str, client: docker.DockerClient) -> None:
    """kill() removes the container, is idempotent, and the worker then reads as KILLED and closed."""
    worker = await runc_backend.spawn(spec_for(echo_image), max_frame_bytes=1 << 20)
    assert container_exists(client, worker.container_id)
    await asyncio.gather(worker.kill(), worker.kill())
    await worker.kill()
    assert not container_exists(client, worker.container_id)
    assert (await worker.exit_info()).kind is ExitKind.KILLED
    with pytest.raises(ChannelClosed):
        await worker.read_line()
    with pytest.raises(ChannelClosed):
        await worker.send(b"x\n")


@pytest.mark.docker
async def test_worker_exit_is_reported(runc_backend: DockerBackend, echo_image: str) -> None:
    """A worker exiting by itself closes the channel and reports its exit code."""
    worker = await runc_backend.spawn(spec_for(echo_image), max_frame_bytes=1 << 20)
    try:
        await worker.send(b"exit 3\n")
        with pytest.raises(ChannelClosed):
            await asyncio.wait_for(worker.read_line(), 30)
        info = await worker.exit_info()
        assert (info.kind, info.code) == (ExitKind.EXITED, 3)
    finally:
        await worker.kill()
    assert (await worker.exit_info()).kind is ExitKind.EXITED


@pytest.mark.docker
async def test_oversized_line_is_a_protocol_error(runc_backend: DockerBackend, echo_image: str) -> None:
    """A stdout line longer than max_frame_bytes raises FrameTooLarge on the real channel."""
    worker = await runc_backend.spawn(spec_for(echo_image), max_frame_bytes=4096)
    try:
        await worker.send(b"big 3000\n")
        assert len(await asyncio.wait_for(worker.read_line(), 30)) == 3000
        await worker.send(b"big 100000\n")
        with pytest.raises(FrameTooLarge):
            await asyncio.wait_for(worker.read_line(), 30)
    finally:
        await worker.kill()


@pytest.mark.docker
async def test_memory_bomb_is_oom(runc_backend: DockerBackend, echo_image: str) -> None:
    """A worker that allocates past its memory limit dies and reads as OOM (swap included in the limit)."""
    worker = await runc_backend.spawn(spec_for(echo_image, memory_bytes=64 << 20), max_frame_bytes=1 << 20)
    try:
        await worker.send(b"bomb\n")
        with pytest.raises(ChannelClosed):
            await asyncio.wait_for(worker.read_line(), 60)
        info = await worker.exit_info()
        assert info.kind is ExitKind.OOM, info
        assert "memory limit" in info.describe()
    finally:
        await worker.kill()


@pytest.mark.docker
async def test_cancelled_spawn_leaves_no_container(runc_backend: DockerBackend, echo_image: str, client: docker.DockerClient) -> None:
    """A spawn cancelled while its container is being created removes that container once it exists."""
    task = asyncio.create_task(runc_backend.spawn(spec_for(echo_image), 1 << 20))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    mine = {"label": f"{docker_mod.ENGINE_LABEL}={runc_backend.engine_id}"}
    for _ in range(100):
        left = await asyncio.to_thread(client.api.containers, all=True, filters=mine)
        if not left:
            break
        await asyncio.sleep(0.1)
    assert not left


@pytest.mark.docker
async def test_orphans_are_reaped_at_start(echo_image: str, client: docker.DockerClient, docker_available: None) -> None:
    """start() removes managed containers of dead engine processes (and of its own engine id), not of live
    ones, nor containers that merely inherit the managed label from an engine image."""
    me = owner_token()
    host, boot, _pid, _ticks = me.split("/")
    engine_id = f"test-{uuid.uuid4().hex[:8]}"
    made = []

    def orphan(owner: str | None, engine: str | None) -> str:
        labels = {images.MANAGED_LABEL: "true"}
        if engine is not None and owner is not None:
            labels |= {docker_mod.ENGINE_LABEL: engine, docker_mod.OWNER_LABEL: owner}
        container = client.api.create_container(echo_image, labels=labels, host_config=client.api.create_host_config(network_mode="none"))
        made.append(container["Id"])
        return container["Id"]

    dead = orphan(f"{host}/{boot}/{2**22 + 11}/1", "old-engine")
    same_id = orphan(me, engine_id)
    live = orphan(me, f"live-{uuid.uuid4().hex[:8]}")  # another engine in this very process: alive
    # `docker run` of an engine image: it inherits the image's managed label but names no engine.
    users_own = orphan(None, None)
    backend = DockerBackend("runc", engine_id)
    try:
        await backend.start()
        assert not container_exists(client, dead)
        assert not container_exists(client, same_id)
        assert container_exists(client, live)
        assert container_exists(client, users_own)
    finally:
        await backend.close()
        for container_id in made:
            try:
                client.api.remove_container(container_id, force=True)
            except docker.errors.NotFound:
                pass


@pytest.mark.docker
async def test_close_removes_every_worker(echo_image: str, client: docker.DockerClient, docker_available: None) -> None:
    """close() removes all containers the backend started, even ones nobody killed."""
    backend = DockerBackend("runc", f"test-{uuid.uuid4().hex[:8]}")
    await backend.start()
    try:
        assert await backend.healthy()
        workers = await asyncio.gather(*(backend.spawn(spec_for(echo_image), 1 << 20) for _ in range(3)))
    finally:
        await backend.close()
    for worker in workers:
        assert not container_exists(client, worker.container_id)
    await workers[0].kill()  # after close: nothing left to do, no error
    assert (await workers[0].exit_info()).kind is ExitKind.KILLED


async def test_unreachable_daemon_says_what_to_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """With no daemon at DOCKER_HOST, start() fails with a BackendError pointing at scripts/ensure-docker."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    backend = DockerBackend("runc", "test-unreachable")
    try:
        with pytest.raises(BackendError, match=r"no Docker daemon reachable at unix://.*ensure-docker"):
            await backend.start()
        assert not await backend.healthy()
    finally:
        await backend.close()


@pytest.mark.docker
async def test_runsc_round_trip(echo_image: str, client: docker.DockerClient, docker_available: None) -> None:
    """Under gVisor (runtime runsc) the same channel works and the limits are in force."""
    backend = DockerBackend("runsc", f"test-{uuid.uuid4().hex[:8]}")
    await backend.start()
    try:
        spec = spec_for(echo_image, pids=docker_mod.default_pids_limit("runsc"))
        worker = await backend.spawn(spec, max_frame_bytes=1 << 20)
        for i in range(20):
            await worker.send(b"hello %d\n" % i)
            assert await asyncio.wait_for(worker.read_line(), 30) == b"hello %d" % i
        host = client.api.inspect_container(worker.container_id)["HostConfig"]
        assert host["Runtime"] == "runsc"
        assert hardening_problems(host, spec, "runsc", "none", channel_bind=worker.stream.channel.bind) == []
        await worker.send(b"probe\n")
        inside = json.loads(await asyncio.wait_for(worker.read_line(), 30))
        assert (inside["uid"], inside["interfaces"], inside["write_tmp"]) == (10001, ["lo"], "ok")
        await worker.kill()
        assert not container_exists(client, worker.container_id)
    finally:
        await backend.close()


# --- the real runner ---------------------------------------------------------------------------


@pytest.mark.docker
async def test_prepare_and_boot_the_real_runner(
    runc_backend: DockerBackend, client: docker.DockerClient, tmp_path: Path
) -> None:
    """prepare() builds the service image; a worker from it answers init with ready and runs a function."""
    project = tmp_path / "project"
    (project / "functions").mkdir(parents=True)
    (project / "functions" / "hello.py").write_text(
        "def handler(context, event, callback):\n    callback(None, 'hello ' + event.get('name', ''))\n"
    )
    spec = await runc_backend.prepare(
        WorkerSpec(engine_id=runc_backend.engine_id, service="svc-runner", build_id="b1", runtime="python", project_root=project)
    )
    assert spec.image is not None and spec.image.startswith("engine-service-svc-runner:")
    worker = await runc_backend.spawn(spec, max_frame_bytes=1 << 20)
    try:
        init = {
            "type": "init", "protocol": 1, "service": "svc-runner", "project_root": images.PROJECT_DIR,
            "functions": [{"name": "hello", "file": "functions/hello.py", "url_path": "/hello", "visibility": "public"}],
            "assets": [], "env": {"ACCOUNT_SID": "AC123"},
            "limits": {"max_log_bytes": 65536, "max_response_bytes": 4194304, "max_frame_bytes": 1 << 20},
            "dev_mode": False,
        }
        await worker.send(json.dumps(init).encode() + b"\n")
        ready = await read_message(worker, {"ready", "init_error"})
        assert ready["type"] == "ready", (ready, worker.stderr_tail())
        invoke = {"type": "invoke", "id": "i1", "function": "hello", "event": {"name": "docker"},
                  "context": {"PATH": "/hello", "DOMAIN_NAME": "localhost", "SERVICE_SID": "ZS1", "ENVIRONMENT_SID": "ZE1"}}
        await worker.send(json.dumps(invoke).encode() + b"\n")
        result = await read_message(worker, {"result"})
        assert (result["status"], result["body"]) == (200, "hello docker")
        done = await read_message(worker, {"done"})
        assert done["clean"] is True
    finally:
        await worker.kill()
        client.images.remove(spec.image, force=True)


async def read_message(worker, types: set[str]) -> dict:
    """The next message of one of `types`, skipping logs."""
    while True:
        message = json.loads(await asyncio.wait_for(worker.read_line(), 60))
        if message["type"] in types:
            return message


@pytest.mark.docker
async def test_cancelled_spawn_has_removed_its_container_when_the_cancellation_completes(
    runc_backend: DockerBackend, echo_image: str, client: docker.DockerClient
) -> None:
    """A pool closed while a worker is being created (a replaced deployment) must not leave that
    container behind after close() returns: the cancelled spawn waits for the create and removes it."""
    mine = {"label": f"{docker_mod.ENGINE_LABEL}={runc_backend.engine_id}"}
    for delay in (0.0, 0.05, 0.2):
        task = asyncio.create_task(runc_backend.spawn(spec_for(echo_image), 1 << 20))
        await asyncio.sleep(delay)
        task.cancel()
        try:
            worker = await task
        except asyncio.CancelledError:
            pass
        else:  # it was already attached: a normal worker, killed as usual
            await worker.kill()
        left = await asyncio.to_thread(client.api.containers, all=True, filters=mine)
        assert not left, f"cancelled after {delay} s: {[c['Id'][:12] for c in left]} still there"


def test_mount_problems_accept_only_the_channel_directory_read_only() -> None:
    """The one mount a worker may have is its channel directory, read-only, at the channel path."""
    from engine.backends.docker_hardening import mount_problems

    bind = "/run/functions-engine/ch/e1/w1:/run/functions-channel:ro"
    good = [{"Source": "/run/functions-engine/ch/e1/w1", "Destination": "/run/functions-channel", "RW": False}]
    assert mount_problems(good, bind) == []
    assert mount_problems([dict(good[0], RW=True)], bind)
    assert mount_problems(good + [{"Source": "/", "Destination": "/host", "RW": False}], bind)
    assert mount_problems([dict(good[0], Source="/etc")], bind)
    assert mount_problems([], bind)


def test_channel_dirs_of_dead_engines_are_reaped_and_no_others(tmp_path: Path) -> None:
    """A dead engine's channel directories go; this engine's, a live one's and one being made stay."""
    from engine.backends.docker_channel import ChannelDirs

    mine = ChannelDirs("e-mine", "host/boot/1/1", tmp_path)
    for engine_id, owner in (("e-mine", "host/boot/1/1"), ("e-live", "live"), ("e-dead", "dead")):
        channel, listener = ChannelDirs(engine_id, owner, tmp_path).make_sync("w1")
        listener.close()
        assert channel.socket_path.exists()
    (tmp_path / "being-made").mkdir()  # no owner file yet, just made: another engine's, in progress
    removed = mine.reap_sync(lambda owner: owner == "live")
    assert [p.name for p in removed] == ["e-dead"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["being-made", "e-live", "e-mine"]
