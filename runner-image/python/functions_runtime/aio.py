"""Async handlers: each invocation runs in a fresh event loop that is torn down after the answer.

After `callback` (or a failure) the runner cancels the timers the handler scheduled, cancels every
task still pending (the handler's own included), lets the cancellations run for a bounded time,
and closes the loop. A closed loop never runs again, so nothing the invocation scheduled can run
later or during another invocation. Tasks that survive cancellation make the worker unclean.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from typing import Any, Awaitable

from .invocation import Invocation

#: How long cancelled tasks get to finish their `finally` blocks before the worker counts as unclean.
CANCEL_GRACE_S = 0.2


class InvocationLoop(asyncio.SelectorEventLoop):
    """An event loop that ends the moment the invocation answers.

    Every callback and timer scheduled while the handler runs is wrapped in a guard; once the
    callback has answered (`over`), guarded callbacks still queued are skipped, so not a line the
    handler scheduled runs afterwards. The answer stops the loop synchronously when it happens on
    the loop's thread, so the iteration in progress is the last one. Clean-up work scheduled after
    `over` is not guarded.
    """

    def __init__(self) -> None:
        super().__init__()
        self._timers: list[asyncio.TimerHandle] | None = []
        self.over = False
        self._thread = threading.get_ident()
        # Tasks whose queued step was skipped: kept so clean-up can find them (asyncio holds tasks weakly).
        self.tasks: list[asyncio.Task[Any]] = []

    def call_soon(self, callback: Any, *args: Any, context: Any = None) -> asyncio.Handle:
        return super().call_soon(self._guard(callback), *args, context=context)

    def call_at(self, when: float, callback: Any, *args: Any, context: Any = None) -> asyncio.TimerHandle:
        handle = super().call_at(when, self._guard(callback), *args, context=context)
        if self._timers is not None:
            self._timers.append(handle)
        return handle

    def _guard(self, callback: Any) -> Any:
        if self.over:
            return callback

        def guarded(*args: Any) -> Any:
            if not self.over:
                return callback(*args)
            owner = getattr(callback, "__self__", None)
            if isinstance(owner, asyncio.Task):
                self.tasks.append(owner)
            return None

        return guarded

    def end(self) -> None:
        """The invocation answered: skip what the handler queued and stop after this iteration."""
        if threading.get_ident() == self._thread:
            self.over = True
            self.stop()
        else:
            try:
                self.call_soon_threadsafe(self.end)
            except RuntimeError:  # loop already closed
                pass

    def cancel_timers(self) -> None:
        """Cancel every timer scheduled so far; timers scheduled from now on (clean-up's own) are kept."""
        timers, self._timers = self._timers or [], None
        for handle in timers:
            handle.cancel()


def run_awaitable(awaitable: Awaitable[Any], invocation: Invocation) -> list[str]:
    """Run an async handler until it answers; returns the reasons the worker is unclean (if any)."""
    loop = InvocationLoop()
    asyncio.set_event_loop(loop)
    loop.set_exception_handler(lambda _loop, ctx: _on_loop_error(ctx, invocation))
    try:
        invocation.set_wake(loop.end)
        main = loop.create_task(_await(awaitable), name="handler")
        main.add_done_callback(lambda task: _on_main_done(task, invocation))
        loop.run_forever()
    except BaseException as exc:  # SystemExit/KeyboardInterrupt raised in a task escape run_forever
        invocation.fail(exc)
    finally:
        invocation.set_wake(None)
        loop.over = True
        reasons = _shut_down(loop)
        asyncio.set_event_loop(None)
    return reasons


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _on_main_done(task: asyncio.Task[Any], invocation: Invocation) -> None:
    if task.cancelled():
        if not invocation.claimed:
            invocation.fail(asyncio.CancelledError("the handler task was cancelled before calling callback"))
        return
    exc = task.exception()
    if exc is not None:
        invocation.fail(exc)


def _on_loop_error(context: dict[str, Any], invocation: Invocation) -> None:
    """Unhandled task errors (never awaited) fail the invocation like an unhandled rejection in JS."""
    exc = context.get("exception")
    message = str(context.get("message") or "unhandled error in the event loop")
    if isinstance(exc, BaseException) and not isinstance(exc, asyncio.CancelledError):
        invocation.fail(exc, context=message)
    elif exc is None:
        invocation.log("error", message)  # a loop warning, not a failure


def _drop_plain_callbacks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel callbacks queued with call_soon that are not task steps, so they never run.

    Task steps stay queued: cancelling a task needs its next step to run. asyncio has no public
    way to list the ready queue, hence the private `_ready` (CPython's selector loop).
    """
    for handle in list(getattr(loop, "_ready", ())):
        owner = getattr(getattr(handle, "_callback", None), "__self__", None)
        if not isinstance(owner, asyncio.Task):
            handle.cancel()


def _discard_if_unstarted(task: asyncio.Task[Any]) -> bool:
    """A task whose first step was skipped never ran a line: close its coroutine quietly."""
    coro = task.get_coro()
    if not inspect.iscoroutine(coro) or inspect.getcoroutinestate(coro) != inspect.CORO_CREATED:
        return False
    task._log_destroy_pending = False  # type: ignore[attr-defined]  # it is abandoned on purpose
    coro.close()
    return True


def _shut_down(loop: InvocationLoop) -> list[str]:
    reasons: list[str] = []
    deadline = time.monotonic() + CANCEL_GRACE_S
    try:
        loop.cancel_timers()
        _drop_plain_callbacks(loop)
        for _ in range(3):  # cancellation handlers may start new tasks: cancel those too
            pending = {task for task in asyncio.all_tasks(loop) if not task.done()}
            remaining = deadline - time.monotonic()
            if not pending or remaining <= 0:
                break
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.wait(pending, timeout=remaining))
        left = [task for task in {*asyncio.all_tasks(loop), *loop.tasks} if not task.done()]
        stubborn = sorted(task.get_name() for task in left if not _discard_if_unstarted(task))
        for task in left:
            task._log_destroy_pending = False  # type: ignore[attr-defined]  # reported as unclean instead
        if stubborn:
            reasons.append("tasks ignored cancellation: " + ", ".join(stubborn))
        else:
            loop.run_until_complete(asyncio.wait_for(loop.shutdown_asyncgens(), CANCEL_GRACE_S))
    except BaseException as exc:  # clean-up must always end with a closed loop
        reasons.append(f"event loop clean-up failed: {type(exc).__name__}: {exc}")
    finally:
        executor = getattr(loop, "_default_executor", None)  # run_in_executor/to_thread workers
        if executor is not None:  # work queued but not started never starts; idle workers end
            executor.shutdown(wait=False, cancel_futures=True)
        loop.close()  # drops pending callbacks; shuts the default executor down without waiting
    return reasons
