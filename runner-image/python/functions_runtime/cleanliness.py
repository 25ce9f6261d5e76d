"""Proving that an invocation left nothing running: threads, native threads, child processes.

A snapshot is taken before the handler runs; after the answer, whatever is new and still alive
makes `done.clean` false (the engine then replaces the worker). Timers started by the handler are
cancelled and every new thread gets a short grace period to finish first.

The common case (nothing was started) costs two system calls: one `stat` whose link count is the
number of OS threads, and one non-blocking `waitpid` that fails with ECHILD when there is no child
at all. Under gVisor every system call is tens of microseconds, so the /proc scans that name the
culprits run only when one of those says something is there.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: How long threads started by the invocation get to finish after the answer.
THREAD_GRACE_S = 0.25


@dataclass(frozen=True)
class Snapshot:
    """What was alive before the handler ran: Python threads, OS threads, child processes."""

    threads: frozenset[int]
    native_threads: int | None
    children: frozenset[int]


def take_snapshot(previous: Snapshot | None = None) -> Snapshot:
    """Record the baseline just before an invocation starts.

    After a clean invocation the OS-level part of its snapshot still holds (nothing new survived
    it), so `previous` saves the system calls; Python threads are listed afresh (no system call).
    """
    threads = frozenset(t.ident for t in threading.enumerate() if t.ident is not None)
    if previous is not None:
        return Snapshot(threads, previous.native_threads, previous.children)
    return Snapshot(threads, _native_thread_count(), frozenset(_child_pids()))


def leftovers(before: Snapshot, runner_threads: set[int], before_waiting: Callable[[], None] = lambda: None) -> list[str]:
    """Reasons the worker is not clean (empty when nothing the invocation started is still alive).

    `before_waiting` is called before anything that can take time (joining threads, scanning /proc).
    """
    reasons: list[str] = []
    deadline = time.monotonic() + THREAD_GRACE_S
    current = threading.current_thread()
    new = [t for t in threading.enumerate()
           if t.ident not in before.threads and t.ident not in runner_threads and t is not current]
    if new:
        before_waiting()
    for thread in new:
        if isinstance(thread, threading.Timer):
            thread.cancel()
    alive = []
    for thread in new:
        if isinstance(thread, threading._DummyThread):  # noqa: SLF001  (foreign thread: cannot be joined)
            if _native_alive(thread.native_id):
                alive.append(thread)
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            alive.append(thread)
    if alive:
        reasons.append("threads still running: " + ", ".join(t.name for t in alive))
    elif before.native_threads is not None:
        extra = _settled_native_excess(before.native_threads, deadline + 0.1, before_waiting)
        if extra > 0:
            reasons.append(f"native threads still running: {extra} more than before the invocation")
    if _has_children() or before.children:
        before_waiting()
        children = sorted(set(_child_pids()) - before.children)
        if children:
            reasons.append("child processes still running: " + ", ".join(_describe_pid(pid) for pid in children))
    return reasons


def _settled_native_excess(baseline: int, deadline: float, before_waiting: Callable[[], None]) -> int:
    """Threads just joined may take a moment to leave /proc; poll until the deadline."""
    while True:
        count = _native_thread_count()
        if count is None or count <= baseline or time.monotonic() >= deadline:
            return 0 if count is None else count - baseline
        before_waiting()
        time.sleep(0.01)


_nlink_counts: bool | None = None  # whether this kernel's link count of /proc/self/task is 2 + threads


def _native_thread_count() -> int | None:
    """OS threads of this process: /proc/self/task's link count is 2 + threads (one stat, no listing)."""
    global _nlink_counts
    try:
        if _nlink_counts:
            return os.stat("/proc/self/task").st_nlink - 2
        listed = len(os.listdir("/proc/self/task"))
        if _nlink_counts is None:  # first call: trust the link count only if this kernel agrees
            _nlink_counts = os.stat("/proc/self/task").st_nlink - 2 == listed
        return listed
    except OSError:
        return None


def _has_children() -> bool:
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


def _native_alive(native_id: int | None) -> bool:
    return native_id is not None and os.path.exists(f"/proc/self/task/{native_id}")


def _child_pids() -> list[int]:
    """Live children of this process (zombies are reaped, not counted); empty without /proc."""
    if not _has_children():
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


def _describe_pid(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return f"{pid} ({handle.read().strip()})"
    except OSError:
        return str(pid)
