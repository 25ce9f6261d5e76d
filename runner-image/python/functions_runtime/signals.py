"""Signal state an invocation can leave behind: handlers, alarms and interval timers.

A handler that calls `signal.alarm(1)` and answers would otherwise kill the worker during someone
else's invocation a second later; one that installs a SIGALRM handler and arms `setitimer` would
have that handler run during later invocations. After every invocation the runner puts back the
handlers it had at `ready` and cancels ITIMER_REAL, ITIMER_VIRTUAL and ITIMER_PROF; a timer still
armed makes the invocation unclean.

Checking the kernel after every invocation would cost a system call per timer and per signal
(25–45 µs each under gVisor), so the runner watches the `signal` module instead: its `signal`,
`alarm` and `setitimer` (and `_signal`'s) are wrapped to note that something changed, and only
then are the timers read and cancelled and the handlers compared. A timer armed behind the
module's back (ctypes) finds the runner's own handler on SIGALRM/SIGVTALRM/SIGPROF: it runs no
handler code, and its arrival makes the invocation unclean and the timers cancelled.
"""

from __future__ import annotations

import _signal
import functools
import signal
import threading
from typing import Any, Callable

#: The signals the three interval timers deliver, with the timer each comes from.
TIMERS: tuple[tuple[int, str], ...] = (
    (signal.ITIMER_REAL, "ITIMER_REAL (alarm)"),
    (signal.ITIMER_VIRTUAL, "ITIMER_VIRTUAL"),
    (signal.ITIMER_PROF, "ITIMER_PROF"),
)
TIMER_SIGNALS = (signal.SIGALRM, signal.SIGVTALRM, signal.SIGPROF)

Handler = Any  # a callable, signal.SIG_DFL, signal.SIG_IGN, or None (installed outside Python)


class SignalGuard:
    """Installed once at start-up (main thread); `mark_ready()` takes the baseline, `reset()` restores it."""

    def __init__(self) -> None:
        self._touched = False  # the signal module was used to change handlers or timers
        self._stray = False  # a timer signal arrived that the runner did not arm
        self._baseline: dict[int, Handler] = {}
        self._mask: set[int] | None = None  # the main thread's blocked signals at `ready`
        for signum in TIMER_SIGNALS:
            signal.signal(signum, self._on_timer_signal)
        for module in (signal, _signal):
            for name in ("signal", "alarm", "setitimer", "pthread_sigmask", "set_wakeup_fd"):
                original = getattr(module, name, None)
                if callable(original) and not getattr(original, "_runner_wrapped", False):
                    setattr(module, name, self._noting(original))

    def _noting(self, original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def noted(*args: Any, **kwargs: Any) -> Any:
            self._touched = True
            return original(*args, **kwargs)

        noted._runner_wrapped = True  # type: ignore[attr-defined]
        return noted

    def _on_timer_signal(self, _signum: int, _frame: Any) -> None:
        """The runner's handler for timer signals: no handler code runs, the worker is marked unclean."""
        self._stray = True

    def mark_ready(self) -> list[str]:
        """The service is loaded: its handlers are the baseline; timers armed at import are cancelled."""
        problems = self._cancel_timers() if self._touched or self._stray else []
        self._touched = self._stray = False
        self._baseline = {signum: signal.getsignal(signum) for signum in signal.valid_signals()}
        self._mask = set(signal.pthread_sigmask(signal.SIG_BLOCK, []))  # one system call, at start-up only
        self._touched = False
        return problems

    def reset(self) -> list[str]:
        """After an invocation: cancel timers and restore handlers; reasons the invocation is unclean."""
        if not (self._touched or self._stray) or threading.current_thread() is not threading.main_thread():
            return []
        stray, self._touched, self._stray = self._stray, False, False
        reasons = self._cancel_timers()
        if stray and not reasons:
            reasons.append("a timer signal arrived that the runner did not arm")
        for signum, handler in self._baseline.items():
            if handler is None or signal.getsignal(signum) is handler:
                continue
            try:
                signal.signal(signum, handler)
            except (OSError, ValueError):
                reasons.append(f"cannot restore the handler of {signal.Signals(signum).name}")
        try:
            signal.set_wakeup_fd(-1)  # the runner has none; asyncio sets one only for loop signal handlers
            if self._mask is not None and set(signal.pthread_sigmask(signal.SIG_SETMASK, self._mask)) != self._mask:
                reasons.append("signals were blocked in the main thread")
        except (OSError, ValueError) as exc:
            reasons.append(f"cannot restore the signal mask: {exc}")
        self._touched = False  # restoring used the wrapped module too
        return reasons

    @staticmethod
    def _cancel_timers() -> list[str]:
        armed = []
        for which, name in TIMERS:
            try:
                delay, interval = signal.setitimer(which, 0)  # one call reads and cancels
            except OSError:
                continue
            if delay > 0 or interval > 0:
                armed.append(name)
        return ["timers still armed (cancelled): " + ", ".join(armed)] if armed else []
