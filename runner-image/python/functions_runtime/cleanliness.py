"""Proving that an invocation left nothing running: threads, native threads, descendant processes.

A snapshot is taken before the handler runs, and another of the Python threads the moment the
callback answers. A thread of the invocation that is running handler code at the answer makes
`done.clean` false at once, with no grace: whatever it does next would run after the callback.
Threads that cannot run handler code any more (a `threading.Timer` cancelled before it fired, an
idle worker of the event loop's executor that was shut down) get a short grace to end, and so does
the thread that answered: what it runs after `callback` is the handler's own continuation, as the
code after `callback` in a synchronous handler is. Anything else still alive is unclean.

Processes: see descendants.py (the runner is a child subreaper, so "no child at all" means "no
descendant at all"; where it cannot be one, as under gVisor, a /proc scan runs after invocations
that started a process).

The common case (nothing was started) costs two system calls: one `stat` whose link count is the
number of OS threads, and one non-blocking `waitpid` that fails with ECHILD when there is no child
(and so no descendant) at all. Under gVisor every system call is tens of microseconds, so the /proc
scans that name the culprits run only when one of those says something is there.
"""

from __future__ import annotations

import _thread
import itertools
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from . import descendants
from .descendants import child_pids, describe_pid, has_children

#: How long threads that can no longer run handler code get to end after the answer.
THREAD_GRACE_S = 0.25

_THREADING_FILE = threading.__file__
_EXECUTOR_FILE_SUFFIX = os.path.join("concurrent", "futures", "thread.py")


#: Threads started with `_thread.start_new_thread` that have not returned yet, by token. Such a
#: thread has no Python frame until it first gets the GIL, so `sys._current_frames()` can miss it.
_raw_threads: dict[int, str] = {}
_raw_tokens = itertools.count()


def track_raw_threads() -> None:
    """Wrap `_thread.start_new_thread` (threading.Thread keeps its own reference and is unaffected)."""
    original = _thread.start_new_thread
    if getattr(original, "_runner_wrapped", False):
        return

    def start_new_thread(function, args, kwargs=None):  # type: ignore[no-untyped-def]
        token = next(_raw_tokens)

        def run(*a, **kw):  # type: ignore[no-untyped-def]
            try:
                return function(*a, **kw)
            finally:
                _raw_threads.pop(token, None)

        _raw_threads[token] = getattr(function, "__qualname__", "a _thread thread")
        try:
            return original(run, args, {} if kwargs is None else kwargs)
        except BaseException:
            _raw_threads.pop(token, None)
            raise

    start_new_thread._runner_wrapped = True  # type: ignore[attr-defined]
    _thread.start_new_thread = start_new_thread
    _thread.start_new = start_new_thread  # type: ignore[attr-defined]


def _raw_running(before: Snapshot) -> list[str]:
    return [f"_thread ({name})" for token, name in list(_raw_threads.items()) if token not in before.raw]


@dataclass(frozen=True)
class Snapshot:
    """What was alive before the handler ran: Python threads, OS threads, child processes."""

    threads: frozenset[int]
    native_threads: int | None
    children: frozenset[int]
    raw: frozenset[int] = frozenset()  # tokens of _thread threads alive before
    count: int | None = None  # `_thread._count()`: Python threads alive (started ones; no system call)


@dataclass(frozen=True)
class AtAnswer:
    """The invocation's threads the moment it was answered."""

    answering: int  # the thread that called callback (or failed the invocation)
    running: tuple[str, ...]  # names of the invocation's other threads that were running handler code


def take_snapshot(previous: Snapshot | None = None) -> Snapshot:
    """Record the baseline just before an invocation starts.

    After a clean invocation the OS-level part of its snapshot still holds (nothing new survived
    it), so `previous` saves the system calls; Python threads are listed afresh (no system call)
    unless their count shows they are the same.
    """
    count = _thread_count()
    if previous is not None and count is not None and count == previous.count and not _raw_threads:
        return previous  # the same threads as after the last clean invocation
    threads = frozenset(sys._current_frames())  # noqa: SLF001  (every Python thread, _thread ones too)
    raw = frozenset(_raw_threads)
    if previous is not None:
        return Snapshot(threads, previous.native_threads, previous.children, raw, count)
    return Snapshot(threads, _native_thread_count(), frozenset(child_pids()), raw, count)


def _no_new_threads(before: Snapshot) -> bool:
    """The cheap common case: no more Python threads than before and no new `_thread` thread.

    A thread counts from the moment it starts until it ends (`Thread.start()` waits for the
    former; `join()` returns after the latter); a `_thread` thread not started yet is tracked."""
    count = _thread_count()
    return count is not None and before.count is not None and count <= before.count and len(_raw_threads) <= len(before.raw)


def _thread_count() -> int | None:
    """Python threads alive; None where this interpreter lacks `_thread._count` (the full check runs)."""
    count = getattr(_thread, "_count", None)
    return count() if count is not None else None


def at_answer(before: Snapshot, runner_threads: set[int]) -> AtAnswer:
    """Called by the answering thread as it claims the invocation: cancel timers, note running threads.

    No system call: `sys._current_frames()` lists every Python thread with the code it is running.
    """
    me = threading.get_ident()
    if _no_new_threads(before):
        return AtAnswer(me, ())
    frames = sys._current_frames()  # noqa: SLF001
    new = [ident for ident in frames if ident not in before.threads and ident not in runner_threads and ident != me]
    raw = _raw_running(before) if len(_raw_threads) > len(before.raw) else []
    if not new:
        return AtAnswer(me, tuple(raw))
    threads = {t.ident: t for t in threading.enumerate()}
    for ident in new:
        thread = threads.get(ident)
        if isinstance(thread, threading.Timer):
            thread.cancel()  # not fired yet: now it never will (as clearTimeout)
    running = [_name(ident, threads) for ident in new if _runs_handler_code(frames[ident])]
    return AtAnswer(me, tuple(running + [name for name in raw if name not in running]))


def leftovers(before: Snapshot, runner_threads: set[int], answered: AtAnswer | None,
              before_waiting: Callable[[], None] = lambda: None) -> list[str]:
    """Reasons the worker is not clean (empty when nothing the invocation started is still alive).

    `before_waiting` is called before anything that can take time (joining threads, scanning /proc).
    """
    reasons: list[str] = []
    me = threading.get_ident()
    if answered is None:  # never answered (a runner error path): judge the threads as of now
        answered = at_answer(before, runner_threads)
    frames = {} if not answered.running and _no_new_threads(before) else sys._current_frames()  # noqa: SLF001
    new = [ident for ident in frames if ident not in before.threads and ident not in runner_threads and ident != me]
    threads = {t.ident: t for t in threading.enumerate()} if new else {}
    running = list(answered.running)
    running += [name for name in _raw_running(before) if name not in running]
    ending: list[int] = []
    for ident in new:
        if ident == answered.answering or not _runs_handler_code(frames[ident]):
            thread = threads.get(ident)
            if isinstance(thread, threading.Timer):  # started after the answer and not fired yet
                thread.cancel()
            ending.append(ident)
        elif (name := _name(ident, threads)) not in running:
            running.append(name)
    if running:
        reasons.append("threads still running: " + ", ".join(running))
    elif ending:
        before_waiting()
        alive = _wait_for_threads(ending, threads, time.monotonic() + THREAD_GRACE_S)
        if alive:
            reasons.append("threads still running: " + ", ".join(_name(ident, threads) for ident in alive))
    if not reasons and before.native_threads is not None:
        extra = _settled_native_excess(before.native_threads, time.monotonic() + THREAD_GRACE_S, before_waiting)
        if extra > 0:
            reasons.append(f"native threads still running: {extra} more than before the invocation")
    if has_children() or before.children:
        before_waiting()
        children = sorted(set(child_pids()) - before.children)
        if children:
            reasons.append("child processes still running: " + ", ".join(describe_pid(pid) for pid in children))
    if descendants.escape_possible():  # no subreaper (gVisor) and the invocation started a process
        before_waiting()
        escaped = descendants.escaped()
        if escaped:
            reasons.append("processes left behind: " + ", ".join(describe_pid(pid) for pid in escaped))
    return reasons


def _runs_handler_code(frame: FrameType | None) -> bool:
    """Whether a thread can still run code of the handler's: any frame outside threading's own
    machinery, or a `Thread.run` / executor work item calling a C function, counts.

    An executor work item whose future is already done is only finishing its bookkeeping (setting
    the result wakes the event loop through asyncio's callbacks): what runs above it does not count.
    """
    stack: list[FrameType] = []
    while frame is not None:
        stack.append(frame)
        frame = frame.f_back
    for index, frame in enumerate(stack):
        if frame.f_code.co_filename.endswith(_EXECUTOR_FILE_SUFFIX) and frame.f_code.co_name == "run":
            future = getattr(frame.f_locals.get("self"), "future", None)
            if future is not None and future.done():
                stack = stack[index + 1:]
                break
    for index, frame in enumerate(stack):
        code = frame.f_code
        if code.co_filename == _THREADING_FILE:
            if index == 0 and code.co_name == "run":  # Thread.run (or Timer.run) calling a C target
                return True
        elif code.co_filename.endswith(_EXECUTOR_FILE_SUFFIX):
            if code.co_name != "_worker":  # a work item running (an idle worker waits in `_worker`)
                return True
        else:
            return True
    return False


def _wait_for_threads(idents: list[int], threads: dict[int | None, threading.Thread], deadline: float) -> list[int]:
    """Join the threads that are only ending; the ones still alive at the deadline."""
    alive = []
    for ident in idents:
        thread = threads.get(ident)
        if thread is not None and not isinstance(thread, threading._DummyThread):  # noqa: SLF001
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                alive.append(ident)
            continue
        while ident in sys._current_frames() and time.monotonic() < deadline:  # noqa: SLF001  (a _thread thread)
            time.sleep(0.005)
        if ident in sys._current_frames():  # noqa: SLF001
            alive.append(ident)
    return alive


def _name(ident: int, threads: dict[int | None, threading.Thread]) -> str:
    thread = threads.get(ident)
    return thread.name if thread is not None else f"thread {ident}"


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
