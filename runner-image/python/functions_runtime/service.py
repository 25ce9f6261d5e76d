"""One loaded service: built from `init`, it runs invocations one at a time.

Everything that needs the `twilio` package is imported from here, after `init` arrived, so a
missing package is reported as an `init_error` instead of killing the runner.
"""

from __future__ import annotations

import builtins
import inspect
import os
import platform
import sys
import threading
from dataclasses import dataclass
from typing import Any, Callable

from . import cleanliness
from .context import Context
from .invocation import Invocation
from .limits import Limits
from .loader import LoadError, ModuleLoader, ModuleLoadError, missing_handler_error
from .plumbing import Plumbing
from .signals import SignalGuard
from .runtime_api import Asset, FunctionInfo, Runtime
from .twilio_globals import build_twilio_global


class InitError(Exception):
    """`init` cannot be used (answered with `init_error`)."""


@dataclass
class LoadedFunction:
    """A function of the service: its handler, or the load error every invocation answers with."""

    info: FunctionInfo
    handler: Callable[..., Any] | None
    error: LoadError | None


class Service:
    """The functions of one service, loaded; `invoke()` runs one `invoke` message to its `done`."""

    def __init__(self, init: dict[str, Any], plumbing: Plumbing, signals: SignalGuard) -> None:
        self._plumbing = plumbing
        self.signals = signals
        self.limits = Limits.from_init(init.get("limits"))
        self.dev_mode = bool(init.get("dev_mode", False))
        root = init.get("project_root")
        if not isinstance(root, str) or not root:
            raise InitError("init.project_root must be a non-empty string")
        self.root = os.path.abspath(root)
        env = init.get("env") or {}
        if not isinstance(env, dict):
            raise InitError(f"init.env must be an object, got {type(env).__name__}")
        self.env: dict[str, Any] = dict(env)
        functions = _entries(init, "functions", lambda e: FunctionInfo(
            path=self._abs(e["file"]), name=str(e["name"]), url_path=str(e.get("url_path", "/" + str(e["name"]))),
            visibility=str(e.get("visibility", "public"))))
        assets = _entries(init, "assets", lambda e: Asset(
            path=self._abs(e["file"]), url_path=str(e["url_path"]), visibility=str(e.get("visibility", "public"))))
        self.runtime = Runtime(self.root, {a.url_path: a for a in assets}, {f.name: f for f in functions}, self.env)
        self.twilio = build_twilio_global()
        self._current: Invocation | None = None
        self._clean_snapshot: cleanliness.Snapshot | None = None  # the last clean invocation's baseline

        plumbing.channel.max_frame_bytes = self.limits.max_frame_bytes
        plumbing.sink.configure(self.limits.max_log_bytes, self.limits.max_frame_bytes)
        globals_ = {"Twilio": self.twilio, "Runtime": self.runtime}
        for name, value in globals_.items():  # also visible to helper modules, like JS globals
            setattr(builtins, name, value)
        self._loader = ModuleLoader(self.root, globals_, lambda text: plumbing.sink.emit("error", text))
        self.runtime.attach_loader(self._loader)
        threading.excepthook = self._on_thread_exception
        self.functions = {info.name: self._load(info) for info in functions}

    def _abs(self, rel: Any) -> str:
        if not isinstance(rel, str):
            raise InitError(f"a file entry must be a string path, got {rel!r}")
        return os.path.normpath(os.path.join(self.root, rel))

    def _load(self, info: FunctionInfo) -> LoadedFunction:
        try:
            module = self._loader.load(info.path)
        except ModuleLoadError as exc:
            return LoadedFunction(info, None, exc.error)
        error = missing_handler_error(self._loader.relative(info.path), module)
        return LoadedFunction(info, None if error else module.handler, error)

    def ready_message(self) -> dict[str, Any]:
        """`ready`, with each load error cut to 4 KiB so the frame stays small."""
        errors = {name: fn.error.message[:4096] for name, fn in self.functions.items() if fn.error}
        return {"type": "ready", "protocol": 1, "runtime": "python", "runtime_version": platform.python_version(),
                "pid": os.getpid(), "load_errors": errors}

    # --- invocations ----------------------------------------------------------------------

    def invoke(self, message: dict[str, Any]) -> None:
        """Run one invocation: `result` as soon as it is answered, then clean-up and `done`."""
        p = self._plumbing
        inv_id = message.get("id")
        if not isinstance(inv_id, str) or not inv_id:  # docs/protocol.md: a non-empty string, as in Node
            p.sink.emit("error", f"runner: ignoring an `invoke` whose `id` is not a non-empty string: {inv_id!r}")
            return
        p.sink.begin(inv_id)
        before = cleanliness.take_snapshot(self._clean_snapshot)
        invocation = Invocation(inv_id, p.channel, p.sink, self.limits, self.dev_mode)
        runner_threads = p.capture.thread_idents()
        invocation.on_answer = lambda: cleanliness.at_answer(before, runner_threads)
        self._current = invocation
        reasons: list[str] = []
        try:
            try:
                reasons += self._run(invocation, message)
            except BaseException as exc:  # a runner bug must still answer
                p.channel.release()
                invocation.fail(exc, context="runner")
            reasons += self.signals.reset()
            # A held `result` waits only while the checks are instant; anything slower sends it first.
            reasons += cleanliness.leftovers(before, runner_threads, invocation.at_answer,
                                             before_waiting=p.channel.release)
            self._current = None
            invocation.close()
            _reset_event_loop_policy()
            p.streams.flush()
            p.streams.restore()
            if not p.capture.sync(before_waiting=p.channel.release):
                reasons.append("captured output did not drain")
            self._clean_snapshot = None if reasons else before
            done = lambda dropped: {"type": "done", "id": inv_id, "clean": not reasons,  # noqa: E731
                                    "reason": "; ".join(reasons) or None, "log_bytes_dropped": dropped}
            p.sink.end_invocation(done, mute=bool(reasons))
        finally:
            p.channel.release()  # `result` (if held), late output and `done`: one write

    def _run(self, invocation: Invocation, message: dict[str, Any]) -> list[str]:
        name = message.get("function")
        function = self.functions.get(name) if isinstance(name, str) else None
        if function is None:
            invocation.fail_with(f"no function named {name!r} in this service")
            return []
        if function.error is not None or function.handler is None:
            invocation.fail_load(function.error or LoadError(f"{name}: no handler", "Error"))
            return []
        event = message.get("event")
        event = event if isinstance(event, dict) else {}
        built_ins = message.get("context")
        context = Context(built_ins if isinstance(built_ins, dict) else {}, self.env)
        invocation.handler_code = getattr(function.handler, "__code__", None)
        try:
            returned = function.handler(context, event, invocation.callback)
        except BaseException as exc:  # SystemExit and KeyboardInterrupt are handler errors too
            self._plumbing.channel.release()
            invocation.fail(exc)
            return []
        finally:
            invocation.handler_code = None
        if inspect.isawaitable(returned):
            if invocation.claimed:  # answered before any await: the coroutine must never run
                close = getattr(returned, "close", None)
                if callable(close):
                    close()
                return []
            from . import aio  # asyncio is imported for async handlers only (or while idle, see preload.py)

            return aio.run_awaitable(returned, invocation)
        invocation.wait_answered()
        return []

    def _on_thread_exception(self, args: threading.ExceptHookArgs) -> None:
        """An uncaught error in a handler's thread is an uncaught error of the invocation (500)."""
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        thread = args.thread.name if args.thread is not None else "a thread"
        invocation = self._current
        if invocation is not None:
            invocation.fail(args.exc_value, context=f"uncaught exception in thread {thread}")
        else:
            self._plumbing.sink.emit("error", f"uncaught exception in thread {thread}: {args.exc_value!r}")


def _reset_event_loop_policy() -> None:
    """Forget any loop a handler set or created, so every invocation starts from the same asyncio state."""
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None:
        asyncio.set_event_loop_policy(None)


def _entries(init: dict[str, Any], key: str, build: Callable[[dict[str, Any]], Any]) -> list[Any]:
    raw = init.get(key) or []
    if not isinstance(raw, list):
        raise InitError(f"init.{key} must be a list, got {type(raw).__name__}")
    out = []
    for index, entry in enumerate(raw):
        try:
            out.append(build(entry))
        except (KeyError, TypeError) as exc:
            raise InitError(f"init.{key}[{index}] is malformed ({exc!r}): {entry!r}") from None
    return out

