"""Start-up order of the runner's I/O, before any user code can run.

1. keep private copies of fds 0/1/2 (protocol in, protocol out, crash output);
2. the protocol channel and the log sink on the private stdout;
3. fds 1/2 → capture pipes, drained by runner threads;
4. sys.stdout/sys.stderr/logging/warnings → the sink.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import traceback
from dataclasses import dataclass
from typing import BinaryIO, TextIO

from .capture import OutputCapture, take_protocol_fds
from .channel import Channel
from .limits import Limits
from .logsink import LogSink
from .streams import PythonStreams


@dataclass(frozen=True)
class Plumbing:
    """The runner's own I/O: what it reads, where frames go, how output is captured."""

    stdin: BinaryIO
    crash: TextIO
    channel: Channel
    sink: LogSink
    capture: OutputCapture
    streams: PythonStreams


def install() -> Plumbing:
    """Set everything up in order; from now on nothing but frames reaches the real stdout."""
    fds = take_protocol_fds()
    crash = os.fdopen(fds.crash, "w", buffering=1, encoding="utf-8", errors="replace")
    faulthandler.enable(crash)  # a segfault still leaves a traceback for the engine's logs
    sys.excepthook = lambda kind, exc, tb: traceback.print_exception(kind, exc, tb, file=crash)
    defaults = Limits()
    channel = Channel(fds.stdout, defaults.max_frame_bytes)
    sink = LogSink(channel, defaults.max_log_bytes)
    capture = OutputCapture(sink)
    streams = PythonStreams(sink)
    stdin = os.fdopen(fds.stdin, "rb", buffering=64 * 1024)
    return Plumbing(stdin=stdin, crash=crash, channel=channel, sink=sink, capture=capture, streams=streams)
