"""The runner's loop: bootstrap on `init`, then one `invoke` at a time, until stdin closes.

Every line is handled inside its own `try`: a bad line is answered (`init_error` before the
service is loaded, an `error` log after), never fatal.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from typing import Any

from . import plumbing as plumbing_mod
from .framing import BadFrame, decode_line
from .plumbing import Plumbing
from . import descendants, socket_channel
from .cleanliness import track_raw_threads
from .preload import Preloader
from .signals import SignalGuard

PROTOCOL_VERSION = 1


class Runner:
    """Holds the plumbing and, once `init` succeeded, the loaded service."""

    def __init__(self, plumbing: Plumbing, signals: SignalGuard) -> None:
        self.p = plumbing
        self.signals = signals
        self.service: Any = None  # service.Service, imported lazily (it needs `twilio`)

    def handle_line(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            message = decode_line(line)
        except BadFrame as exc:
            self._reject(f"malformed message from the engine: {exc}")
            return
        kind = message["type"]
        if kind == "init":
            self._init(message)
        elif kind == "invoke" and self.service is not None:
            self.service.invoke(message)
        elif self.service is None:
            self._reject(f"expected `init` first, got `{kind}`")
        else:
            self.p.sink.emit("error", f"runner: ignoring unexpected `{kind}` message")

    def _reject(self, message: str) -> None:
        if self.service is None:
            self.p.channel.send({"type": "init_error", "message": message})
        else:
            self.p.sink.emit("error", f"runner: {message}")

    def _init(self, message: dict[str, Any]) -> None:
        if self.service is not None:
            self.p.sink.emit("error", "runner: ignoring a second `init`")
            return
        if message.get("protocol") != PROTOCOL_VERSION:
            self._reject(f"protocol version mismatch: this runner speaks {PROTOCOL_VERSION}, "
                         f"init asked for {message.get('protocol')!r}")
            return
        try:
            from .service import InitError, Service
        except ImportError as exc:
            self._reject(f"cannot start the Python runner: {exc} (is the `twilio` package installed?)")
            return
        try:
            service = Service(message, self.p, self.signals)
        except (InitError, ValueError) as exc:
            self._reject(str(exc))
            return
        descendants.mark_ready()
        for problem in self.signals.mark_ready():  # the service's own handlers are the baseline
            self.p.sink.emit("error", f"runner: at import: {problem}")
        self.p.streams.flush()
        self.p.capture.sync()  # bootstrap output is logged before `ready`
        self.service = service
        self.p.channel.send(service.ready_message())


def main() -> None:
    sys.dont_write_bytecode = True
    socket_channel.connect_from_env()  # the docker backend's channel: fds 0/1 become its socket
    # As PID 1 in a container SIGTERM would be ignored by default; the engine may use it to stop us.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: os._exit(128 + signal.SIGTERM))
    # Orphaned descendants (`sh -c "cmd &"`) re-parent to the runner, so clean-up sees them.
    descendants.become_subreaper()
    track_raw_threads()
    signals = SignalGuard()
    plumbing = plumbing_mod.install()
    runner = Runner(plumbing, signals)
    preloader = Preloader(plumbing.stdin.fileno())
    while True:
        if runner.service is not None and preloader.pending:
            # The engine sends the next message only after `ready`/`done`, so nothing is in stdin's
            # buffer here and polling the fd tells whether one is waiting.
            preloader.maybe_run()
        line = plumbing.stdin.readline()
        if not line:
            break
        try:
            runner.handle_line(line)
        except Exception as exc:  # a runner bug: report it and keep serving
            traceback.print_exc(file=plumbing.crash)
            try:
                if runner.service is None:
                    plumbing.channel.send({"type": "init_error", "message": f"runner error: {exc!r}"})
                else:
                    plumbing.sink.emit("error", f"runner error: {exc!r}")
            except Exception:
                pass
    plumbing.streams.flush()
    plumbing.capture.sync(0.5)
    os._exit(0)  # do not wait for threads a handler left behind
