"""The invocation's descendant processes: every process it started, however deep, must be gone.

At start-up the runner makes itself a child subreaper (`prctl(PR_SET_CHILD_SUBREAPER)`): a process
whose parent exits (a backgrounded grandchild, `sh -c "cmd &"`, a double fork) is re-parented to
the runner instead of the container's init, so one non-blocking `waitpid(-1)` that fails with
ECHILD proves there is no descendant at all, and /proc is scanned only when it does not.

gVisor has no subreapers (prctl fails with EINVAL, so it is not tried where the kernel lacks
/proc/<pid>/task/<tid>/children, as gVisor's does), and orphans go to the container's init
(docker-init, PID 1). There the runner notes when an invocation starts a process (`os.fork`,
`os.posix_spawn`, `os.system`, `subprocess`: the functions are wrapped, no system call) and only
then scans /proc for processes that are neither PID 1, the runner, nor there at `ready`. A process
started behind those functions' back (ctypes) is not seen there: the hard boundaries are the
service and the container.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>

_subreaper = False
_spawned = False  # a process was started since the last check (tracked only without a subreaper)
_baseline: frozenset[int] = frozenset()  # processes other than init and the runner at `ready`


def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process; without it, track process creation."""
    global _subreaper
    _subreaper = False
    # gVisor has neither subreapers nor /proc/<pid>/task/<tid>/children: do not pay for loading
    # ctypes there (20-30 ms of start-up under gVisor) for a call that fails with EINVAL.
    if os.path.exists(f"/proc/self/task/{os.getpid()}/children"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            _subreaper = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        except (OSError, AttributeError):
            _subreaper = False
    if not _subreaper:
        _track_spawns()
    return _subreaper


def mark_ready() -> None:
    """The service is loaded: processes alive now (started at import) are the baseline."""
    global _baseline, _spawned
    if not _subreaper:
        _baseline = frozenset(_others())
        _spawned = False


def escape_possible() -> bool:
    return not _subreaper and _spawned


def escaped() -> list[int]:
    """Processes started since `ready` that are still alive and not children (those are counted apart)."""
    global _spawned
    _spawned = False
    me = os.getpid()
    found = []
    for pid in _others():
        stat = _stat(pid)
        if pid in _baseline or stat is None or stat[1] == me:
            continue
        if stat[0] != "Z":
            found.append(pid)
    return sorted(found)


def _others() -> list[int]:
    """Every process in /proc but PID 1 and this one (inside a container: its PID namespace)."""
    me = os.getpid()
    if os.getppid() != 1:  # not a container's direct child of init: orphans are not ours to find
        return []
    try:
        return [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and int(entry) not in (1, me)]
    except OSError:
        return []


def _track_spawns() -> None:
    """Wrap the functions that start processes so an invocation that used one gets the /proc scan."""
    import _posixsubprocess

    for module, names in ((os, ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system")),
                          (_posixsubprocess, ("fork_exec",))):
        for name in names:
            original = getattr(module, name, None)
            if callable(original) and not getattr(original, "_runner_wrapped", False):
                setattr(module, name, _noting(original))


def _noting(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def noted(*args: Any, **kwargs: Any) -> Any:
        global _spawned
        _spawned = True
        return original(*args, **kwargs)

    noted._runner_wrapped = True  # type: ignore[attr-defined]
    return noted


def has_children() -> bool:
    """False when this process has no child at all (zombies are reaped on the way): one waitpid call."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        except InterruptedError:
            continue
        if pid == 0:
            return True


def child_pids() -> list[int]:
    """Live children of this process (zombies are reaped, not counted); empty without /proc."""
    if not has_children():
        return []
    me = os.getpid()
    found: list[int] = []
    for pid in _candidate_children(me):
        stat = _stat(pid)
        if stat is None or stat[1] != me:
            continue
        if stat[0] == "Z":
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            continue
        found.append(pid)
    return found


def _candidate_children(me: int) -> set[int]:
    """/proc/self/task/*/children when the kernel has it (cheap), else every pid in /proc."""
    if not os.path.exists(f"/proc/self/task/{me}/children"):  # no CONFIG_PROC_CHILDREN: scan every process
        try:
            return {int(entry) for entry in os.listdir("/proc") if entry.isdigit() and int(entry) != me}
        except OSError:
            return set()
    pids: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as handle:
                pids.update(int(pid) for pid in handle.read().split())
        except OSError:  # the thread ended meanwhile
            continue
    return pids


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) from /proc/<pid>/stat; the command name may contain spaces and parentheses."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
        fields = data[data.rindex(b")") + 2:].split()
        return fields[0].decode(), int(fields[1])
    except (OSError, ValueError, IndexError):
        return None


def describe_pid(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return f"{pid} ({handle.read().strip()})"
    except OSError:
        return str(pid)
