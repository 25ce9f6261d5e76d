"""Process backend: each worker is a child process with rlimits. Trusted code only.

It has no filesystem, network or memory isolation beyond rlimits: it exists for development and
fast tests, and says so at start-up. The runner gets a scrubbed environment (nothing of the
engine's), its own session (so the whole group can be killed), a private temp dir as cwd under the
engine's temp root, and dies with the engine (PR_SET_PDEATHSIG). What it starts is held by
`process_tree`: a process that leaves a worker's tree (setsid, a double fork) is adopted by the
engine and killed as soon as the runner has exited (killed or not), else within `_SWEEP_INTERVAL_S`,
and what survives an engine crash is killed, with the dead engine's temp root removed, by the next
engine's start.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import hashlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
import weakref
from pathlib import Path

import structlog

from engine import npmdeps, pydeps
from engine.backends import process_tree
from engine.backends.base import Backend, ExitInfo, ExitKind, ProgressFn, WorkerChannel, WorkerLimits, WorkerSpec
from engine.errors import BackendError, ChannelClosed, FrameTooLarge
from engine.paths import node_runner_dir, python_runner_dir

_PR_SET_PDEATHSIG = 1
_STDERR_TAIL_BYTES = 16 * 1024
#: How long a kill waits for the SIGKILLed runner's exit status before sweeping anyway (it arrives
#: from asyncio's child watcher within milliseconds).
_RUNNER_EXIT_WAIT_S = 5.0
#: How often adopted orphans (a worker's processes that left its tree) are looked for, killed and
#: reaped between runner exits (each exit sweeps too). A sweep reads every /proc/PID/stat (some
#: milliseconds on a busy host), so not more often.
_SWEEP_INTERVAL_S = 5.0

log = structlog.get_logger("engine")


def _runner_command(runtime: str) -> list[str]:
    if runtime == "python":
        # -B: no .pyc; -s: no user site-packages. The environment is ours entirely (see spawn),
        # so PYTHONPATH carries only the project's own requirements.
        return [sys.executable, "-B", "-s", str(python_runner_dir() / "runner.py")]
    if runtime == "node":
        node = shutil.which("node")
        if node is None:
            raise BackendError("the process backend needs `node` on PATH to run JavaScript functions")
        # Without the WebAssembly trap handler, Node does not need to reserve more address space
        # than RLIMIT_AS allows (fetch()'s parser is WebAssembly).
        return [node, "--disable-wasm-trap-handler", str(node_runner_home() / "runner.js")]
    raise BackendError(f"no runner for runtime {runtime!r}")


def node_runner_home() -> Path:
    """The Node runner with its node_modules: in place in a checkout, else a cached copy made with npm ci."""
    source = node_runner_dir()
    if (source / "node_modules" / "twilio").is_dir():
        return source
    lock = (source / "package-lock.json").read_bytes()
    home = pydeps.cache_root() / "node-runner" / hashlib.sha256(lock + (source / "runner.js").read_bytes()).hexdigest()[:16]
    if not (home / ".complete").is_file():
        npm = shutil.which("npm")
        if npm is None:
            raise BackendError("the Node runner's packages are missing and `npm` is not on PATH to install them")
        shutil.rmtree(home, ignore_errors=True)
        shutil.copytree(source, home, ignore=shutil.ignore_patterns("node_modules", "Dockerfile"))
        result = subprocess.run([npm, "ci", "--omit=dev", "--no-audit", "--no-fund"], cwd=home,
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise BackendError(f"npm ci for the Node runner failed in {home}: {result.stderr.strip()[-500:]}")
        (home / ".complete").touch()
    return home


def _child_setup(limits: WorkerLimits, nproc: int) -> None:
    """Runs in the child between fork and exec: rlimits and death with the parent."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    # Address space, not RSS: a Python runner with the twilio package maps several times its RSS.
    address_space = max(limits.memory_bytes * 4, 1024 * 1024 * 1024)
    for which, value in (
        (resource.RLIMIT_AS, address_space),
        (resource.RLIMIT_CPU, limits.cpu_seconds),
        (resource.RLIMIT_NOFILE, limits.nofile),
        (resource.RLIMIT_FSIZE, limits.fsize_bytes),
        (resource.RLIMIT_NPROC, nproc),
        (resource.RLIMIT_CORE, 0),
    ):
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass


def _user_process_count() -> int:
    uid = os.getuid()
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += 1
            except OSError:
                continue
    return count


class _RunnerProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Says when the runner exited. Its pipes do not: a daemon it left (outside its process group)
    holds copies of them, and asyncio's `Process.wait()` waits for them to close too."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


class ProcessChannel(WorkerChannel):
    def __init__(self, proc: asyncio.subprocess.Process, exited: asyncio.Event, workdir: Path,
                 max_frame_bytes: int, backend: ProcessBackend) -> None:
        self.worker_id = f"proc-{proc.pid}"
        self._proc = proc
        self._exited = exited
        self._workdir = workdir
        self._backend = backend
        self._max_frame = max_frame_bytes
        self._killed = False
        self._stderr: collections.deque[bytes] = collections.deque()
        self._stderr_size = 0
        self._stderr_task = asyncio.create_task(self._drain_stderr())
        self._swept = asyncio.create_task(self._sweep_after_exit())

    async def send(self, data: bytes) -> None:
        stdin = self._proc.stdin
        if stdin is None or stdin.is_closing():
            raise ChannelClosed("worker stdin is closed")
        stdin.write(data)
        await stdin.drain()

    async def read_line(self) -> bytes:
        assert self._proc.stdout is not None
        try:
            line = await self._proc.stdout.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            raise ChannelClosed("worker closed its stdout") from exc
        except asyncio.LimitOverrunError as exc:
            raise FrameTooLarge(f"worker sent a line over max_frame_bytes={self._max_frame}") from exc
        return line[:-1]

    async def kill(self) -> None:
        if not self._killed:
            self._killed = True
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        # Not `proc.wait()`, which waits for the runner's pipes too (see _RunnerProtocol): the sweep
        # that follows the runner's exit ends whatever holds them.
        try:
            await asyncio.wait_for(asyncio.shield(self._swept), _RUNNER_EXIT_WAIT_S)
        except asyncio.TimeoutError:
            await self._backend.sweep()
        await asyncio.to_thread(shutil.rmtree, self._workdir, ignore_errors=True)

    async def _sweep_after_exit(self) -> None:
        """Once the runner is reaped (all its threads gone, so its children are the engine's), sweep
        at once, killed or crashed: a daemon it left would otherwise run on, holding the runner's
        stdout open so that not even its crash is seen, until the periodic sweep."""
        await self._exited.wait()
        try:
            await self._backend.sweep()
        except Exception:  # a /proc oddity: the periodic sweep tries again
            log.exception("process_backend_sweep_failed")

    async def exit_info(self) -> ExitInfo:
        try:
            code = await asyncio.wait_for(self._proc.wait(), 2)
        except asyncio.TimeoutError:
            return ExitInfo(ExitKind.RUNNING)
        if self._killed:
            return ExitInfo(ExitKind.KILLED, code)
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            return ExitInfo(ExitKind.SIGNALED, code, name)
        last_lines = self.stderr_tail().strip().splitlines()
        return ExitInfo(ExitKind.EXITED, code, last_lines[-1] if last_lines else "")

    def stderr_tail(self) -> str:
        return b"".join(self._stderr).decode("utf-8", "replace")

    async def _drain_stderr(self) -> None:
        assert self._proc.stderr is not None
        while chunk := await self._proc.stderr.read(4096):
            self._stderr.append(chunk)
            self._stderr_size += len(chunk)
            while self._stderr_size > _STDERR_TAIL_BYTES and len(self._stderr) > 1:
                self._stderr_size -= len(self._stderr.popleft())


class ProcessBackend(Backend):
    name = "process"
    isolation = "process: child processes with rlimits, NOT isolated; trusted code only"

    def __init__(self) -> None:
        self._channels: weakref.WeakSet[ProcessChannel] = weakref.WeakSet()
        # Runners by pid until asyncio's child watcher has reaped them: a sweep never touches these.
        self._runners: dict[int, asyncio.subprocess.Process] = {}
        self._spawn_lock = asyncio.Lock()  # a sweep never runs between a runner's fork and its pid being known
        self._sweeper: asyncio.Task[None] | None = None
        self.root: Path | None = None  # this engine's temp root, `<pid>-<start time>`
        self._pythonpath: dict[tuple[str, str], str] = {}  # (service, build) → its requirements' site dir
        self._node_path: dict[tuple[str, str], str] = {}  # (service, build) → its package.json dependencies' node_modules

    async def start(self) -> None:
        """Become the reaper of the workers' orphans, clean up after dead engines, make our temp root."""
        if not process_tree.set_child_subreaper():
            log.warning("process_backend_no_subreaper",
                        detail="PR_SET_CHILD_SUBREAPER refused: processes a worker double-forks may outlive it")
        parent = process_tree.roots_parent()
        parent.mkdir(mode=0o700, exist_ok=True)
        removed = await asyncio.to_thread(process_tree.reap_dead_roots, parent)
        if removed:
            log.info("process_backend_reaped", roots=[str(r) for r in removed])
        self.root = parent / process_tree.own_root_name()
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)  # parents: another engine may just have removed it
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def sweep(self) -> None:
        """Kill and reap adopted orphans of workers (see process_tree.sweep_adopted)."""
        async with self._spawn_lock:
            self._runners = {pid: p for pid, p in self._runners.items() if p.returncode is None}
            ended = await asyncio.to_thread(process_tree.sweep_adopted, set(self._runners))
        if ended:
            log.info("process_backend_swept", processes=ended)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(_SWEEP_INTERVAL_S)
            try:
                await self.sweep()
            except Exception:  # a /proc oddity must not end the sweeping
                log.exception("process_backend_sweep_failed")

    async def prepare(self, spec: WorkerSpec, progress: ProgressFn | None = None) -> WorkerSpec:
        """Install the project's requirements.txt (Python) or package.json dependencies (JS) into a
        cache dir, once per content."""
        if spec.runtime == "node":
            await asyncio.to_thread(node_runner_home)  # npm ci once, off the event loop
            modules = await asyncio.to_thread(npmdeps.host_node_modules, spec.project_root, progress or (lambda _: None))
            if modules is not None:
                self._node_path[(spec.service, spec.build_id)] = str(modules)
        if spec.runtime == "python":
            site = await asyncio.to_thread(pydeps.host_site_packages, spec.project_root, progress or (lambda _: None))
            if site is not None:
                self._pythonpath[(spec.service, spec.build_id)] = str(site)
        return spec

    async def spawn(self, spec: WorkerSpec, max_frame_bytes: int) -> WorkerChannel:
        command = _runner_command(spec.runtime)
        if self.root is None:
            raise BackendError("the process backend was not started (no temp root)")
        workdir = Path(tempfile.mkdtemp(prefix=f"worker-{spec.service}-", dir=self.root))
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(workdir),
            "TMPDIR": str(workdir),
            "ENGINE_WORKER_ID": uuid.uuid4().hex[:12],
            # Inherited by everything the worker starts: how a later engine finds it after a crash.
            process_tree.MARKER_VAR: str(self.root),
        }
        build = (spec.service, spec.build_id)
        if build in self._pythonpath:
            env["PYTHONPATH"] = self._pythonpath[build]
        if spec.runtime == "node" and build in self._node_path:
            env["NODE_PATH"] = self._node_path[build]  # after the project's own node_modules
        nproc = _user_process_count() + spec.limits.pids
        async with self._spawn_lock:
            proc, exited = await self._exec(command, workdir, env, spec, nproc, max_frame_bytes)
            self._runners[proc.pid] = proc
            channel = ProcessChannel(proc, exited, workdir, max_frame_bytes, self)
        self._channels.add(channel)
        return channel

    async def _exec(self, command: list[str], workdir: Path, env: dict[str, str], spec: WorkerSpec, nproc: int,
                    max_frame_bytes: int) -> tuple[asyncio.subprocess.Process, asyncio.Event]:
        """asyncio.create_subprocess_exec, with a protocol that tells when the runner exited."""
        loop = asyncio.get_running_loop()
        try:
            transport, protocol = await loop.subprocess_exec(
                lambda: _RunnerProtocol(limit=max_frame_bytes + 1, loop=loop),
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=workdir,
                env=env,
                start_new_session=True,
                preexec_fn=lambda: _child_setup(spec.limits, nproc),
            )
        except OSError as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            raise BackendError(f"could not start the {spec.runtime} runner ({command[0]}): {exc}") from exc
        return asyncio.subprocess.Process(transport, protocol, loop), protocol.exited

    async def close(self) -> None:
        """Kill every worker and all it started, then remove the temp root."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        await asyncio.gather(*(c.kill() for c in list(self._channels)), return_exceptions=True)
        self._channels.clear()
        await self.sweep()
        if self.root is not None:
            killed = await asyncio.to_thread(process_tree.kill_marked, self.root)
            if killed:
                log.warning("process_backend_stragglers_killed", processes=killed)
            await asyncio.to_thread(shutil.rmtree, self.root, ignore_errors=True)
            try:
                self.root.parent.rmdir()  # the last engine out leaves no trace; another's root keeps it
            except OSError:
                pass
