"""One invocation's callback contract: first call wins, the result goes out at once.

`callback` may be called from the handler, another thread or an asyncio task. The first call (or
the first failure) claims the invocation under a lock, builds the reply in the calling thread and
sends `result` immediately; later calls are ignored with a `warn` log. The runner's main thread
only waits for `answered`.
"""

from __future__ import annotations

import sys
import threading
from types import CodeType
from typing import Any, Callable

from .channel import Channel
from .framing import Reply, result_frame
from .limits import Limits
from .loader import LoadError
from .logsink import LogSink
from .reply import build_reply, error_json, exception_reply
from .tailcall import returns_after_current_call
from .tracebacks import format_exception

Callback = Callable[..., None]


class Invocation:
    """The state of one `invoke`, shared by every thread and task that can answer it."""

    def __init__(self, invocation_id: Any, channel: Channel, sink: LogSink, limits: Limits, dev_mode: bool) -> None:
        self.id = invocation_id
        self._channel = channel
        self._sink = sink
        self._limits = limits
        self._dev_mode = dev_mode
        self._lock = threading.Lock()
        self._claimed = False
        self._closed = False
        self.answered = threading.Event()  # set once the `result` frame is written
        self._wake: Callable[[], None] | None = None
        # Set by the runner while it calls a synchronous handler on the main thread (see tailcall.py).
        self.handler_code: CodeType | None = None
        # Called by the thread that answers, before `result` is written (see cleanliness.at_answer).
        self.on_answer: Callable[[], Any] | None = None
        self.at_answer: Any = None
        self.callback: Callback = self._make_callback()

    def _make_callback(self) -> Callback:
        def callback(error: Any = None, response: Any = None, *_ignored: Any) -> None:
            """callback(error, response): the first call answers the request; later calls are ignored."""
            self.on_callback(error, response)

        return callback

    # --- answering ------------------------------------------------------------------------

    def on_callback(self, error: Any, response: Any) -> None:
        handler_code = self.handler_code
        if handler_code is not None and self._called_last_by(handler_code) and not self._claimed:
            # Nothing of the handler runs after this call: `result` can wait the microseconds until it
            # returns and go out in one write with `done` (the runner releases the hold either way).
            self._channel.hold()
        if not self._claim():
            if not self._closed:
                self._sink.emit("warn", "callback() was called again; only the first call counts, this one is ignored")
            return
        try:
            if isinstance(error, BaseException):
                self._sink.emit("error", format_exception(error))
            reply = build_reply(error, response, self._dev_mode)
        except BaseException as exc:  # a Response whose body cannot be rendered, a broken __str__…
            self._sink.emit("error", format_exception(exc))
            reply = exception_reply(exc, self._dev_mode, prefix="cannot serialise the callback response: ")
        self._send(reply)

    @staticmethod
    def _called_last_by(handler_code: CodeType) -> bool:
        """The callback was called directly by the handler, as the last thing it does (frames: this,
        on_callback, the callback closure, the handler)."""
        try:
            frame = sys._getframe(3)  # noqa: SLF001
        except ValueError:
            return False
        return frame.f_code is handler_code and returns_after_current_call(frame)

    def fail(self, exc: BaseException, context: str = "") -> None:
        """An uncaught error: 500 if nothing answered yet; always logged with its traceback."""
        prefix = f"{context}: " if context else ""
        self._sink.emit("error", prefix + format_exception(exc))
        if self._claim():
            self._send(exception_reply(exc, self._dev_mode))

    def fail_with(self, message: str, name: str = "Error") -> None:
        """A 500 the runner describes itself (unknown function, nothing to call)."""
        if self._claim():
            self._send(error_json(message, name))

    def fail_load(self, error: LoadError) -> None:
        self.fail_with(error.message, error.name)

    def _claim(self) -> bool:
        with self._lock:
            if self._claimed or self._closed:
                return False
            self._claimed = True
        if self.on_answer is not None:
            try:
                self.at_answer = self.on_answer()
            except Exception:  # the answer must go out; clean-up judges the threads again
                self.at_answer = None
        return True

    def _send(self, reply: Reply) -> None:
        try:
            data = result_frame(self.id, reply, self._limits.max_response_bytes, self._limits.max_frame_bytes)
        except Exception as exc:  # e.g. a status that is not an int: still answer
            data = result_frame(self.id, exception_reply(exc, self._dev_mode),
                                self._limits.max_response_bytes, self._limits.max_frame_bytes)
        try:
            self._channel.send_bytes(data)
        finally:
            self.answered.set()
            wake = self._wake
            if wake is not None:
                wake()

    def log(self, level: str, text: str) -> None:
        self._sink.emit(level, text)

    # --- waiting --------------------------------------------------------------------------

    @property
    def claimed(self) -> bool:
        return self._claimed

    def set_wake(self, wake: Callable[[], None] | None) -> None:
        """Called after `result` is sent (from any thread): wakes an event loop waiting for the answer."""
        self._wake = wake
        if wake is not None and self.answered.is_set():
            wake()

    def wait_answered(self) -> None:
        """Block until some thread answers; the engine's deadline bounds this from outside."""
        while not self.answered.wait(0.5):
            pass

    def close(self) -> None:
        """The invocation is over: late callback calls are silently ignored."""
        with self._lock:
            self._closed = True
        self._wake = None
