"""The process backend's hold on everything its workers start, read from /proc (Linux only).

A worker is a process tree the engine must be able to end entirely, including processes that left
its session (`setsid`) or their parent (a double fork), and including after an engine crash:

- the engine is a child subreaper (`PR_SET_CHILD_SUBREAPER`): a process orphaned anywhere below
  it is re-parented to the engine rather than to init. An adopted process outside the engine's own
  session can only come from a worker (runners start in their own session; the engine's helpers,
  pip and npm, stay in the engine's), so `sweep_adopted` kills and reaps it. It never waits for a
  pid it did not adopt, so asyncio's child watcher (which waits for each runner by its pid) and
  `subprocess` keep their exit statuses;
- every worker's environment carries `FUNCTIONS_ENGINE_ROOT=<its engine's temp root>`, inherited
  by its descendants, so a later engine finds what a crashed one left (`kill_marked`);
- each engine's temp root is `<pid>-<start time>` under one parent per user, so an engine removes
  the roots of dead engines only, never a live one's (`reap_dead_roots`). Engines sharing that
  parent must share a pid namespace (as on one host or in one container).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

MARKER_VAR = "FUNCTIONS_ENGINE_ROOT"
_PR_SET_CHILD_SUBREAPER = 36
#: A tree is killed in rounds (a process killed in one round may have children adopted in the
#: next); a tree deeper than this, or a process unkillable for this long, is left and logged.
_KILL_ROUNDS = 50
_REAP_WAIT_S = 2.0


@dataclass(frozen=True)
class ProcStat:
    state: str  # R, S, D, Z, ...
    ppid: int
    session: int
    start_ticks: int  # since boot: with the pid, names one process for good


def proc_stat(pid: int) -> ProcStat | None:
    """The fields of /proc/PID/stat we need, or None if the process is gone."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        raw = os.read(fd, 1024)
    except OSError:
        return None
    finally:
        os.close(fd)
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = raw[raw.rindex(b")") + 2:].split()
    return ProcStat(fields[0].decode(), int(fields[1]), int(fields[3]), int(fields[19]))


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _has_env(pid: int, entry: bytes) -> bool:
    try:
        return entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:  # gone, a zombie (no environment left), or another user's
        return False


def set_child_subreaper() -> bool:
    """Make this process the reaper of orphans below it; False where the kernel refuses."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def sweep_adopted(skip: set[int]) -> int:
    """Kill and reap every adopted child outside this process's session; `skip` = runner pids.

    Returns how many processes were killed or reaped. Blocking (/proc reads, short waits): call it
    from a thread.
    """
    me, my_session = os.getpid(), os.getsid(0)
    ended = 0
    deadline = time.monotonic() + _REAP_WAIT_S
    for _ in range(_KILL_ROUNDS):
        if time.monotonic() > deadline:  # bounded: the caller holds up worker starts meanwhile
            break
        adopted = [
            pid for pid in _pids()
            if pid not in skip and (st := proc_stat(pid)) is not None and st.ppid == me and st.session != my_session
        ]
        if not adopted:
            break
        for pid in adopted:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in adopted:
            ended += _reap(pid, deadline)
    return ended


def _reap(pid: int, deadline: float) -> int:
    """Wait (bounded) for an adopted, killed child; once reaped, its own children are ours."""
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return 0
        if done:
            return 1
        if time.monotonic() > deadline:
            return 0
        time.sleep(0.01)


def kill_marked(root: Path) -> int:
    """SIGKILL every process whose environment names `root` (a worker's descendants), until none is left."""
    entry = f"{MARKER_VAR}={root}".encode()
    me = os.getpid()
    killed = 0
    for _ in range(_KILL_ROUNDS):
        found = [pid for pid in _pids() if pid != me and _has_env(pid, entry)]
        if not found:
            break
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.02)  # let the killed exit, so the next scan sees only what they forked meanwhile
    return killed


def roots_parent() -> Path:
    """Where every engine of this user keeps its temp root (honours TMPDIR)."""
    return Path(tempfile.gettempdir()) / f"functions-engine-process-{os.getuid()}"


def own_root_name() -> str:
    me = os.getpid()
    stat = proc_stat(me)
    return f"{me}-{stat.start_ticks if stat else 0}"


def _owner_alive(name: str) -> bool | None:
    """Whether the engine that named a root `<pid>-<start>` still runs; None for a foreign name."""
    pid, sep, start = name.partition("-")
    if not (sep and pid.isdigit() and start.isdigit()):
        return None
    stat = proc_stat(int(pid))
    return stat is not None and stat.start_ticks == int(start) and stat.state != "Z"


def reap_dead_roots(parent: Path) -> list[Path]:
    """Kill what dead engines' workers left and remove their roots; live engines' roots are kept."""
    removed = []
    try:
        entries = list(parent.iterdir())
    except FileNotFoundError:
        return removed
    for root in entries:
        if _owner_alive(root.name) is False:
            kill_marked(root)
            shutil.rmtree(root, ignore_errors=True)
            removed.append(root)
    return removed
