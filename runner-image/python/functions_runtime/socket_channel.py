"""Connect to the engine's channel socket and make it fds 0 and 1, before anything else runs.

Under the docker backend the engine listens on a Unix socket in a directory bind-mounted into
this container alone (docs/protocol.md, "Transport") and gives its path and a token in the
environment. The runner connects, sends `{"type":"hello","token":...}`, and puts the socket on
fds 0 and 1: everything after that (the protocol fds, the capture of fds 1/2) works as with
pipes. Both variables are removed first, so a handler never sees them. Without them (the process
backend) nothing changes.
"""

from __future__ import annotations

import json
import os
import socket
import sys

SOCKET_ENV = "RUNNER_CHANNEL_SOCKET"
TOKEN_ENV = "RUNNER_CHANNEL_TOKEN"


def connect_from_env() -> None:
    """Connect if the engine asked for it; exit with a message on stderr if that fails."""
    path = os.environ.pop(SOCKET_ENV, None)
    token = os.environ.pop(TOKEN_ENV, "")
    if not path:
        return
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        sock.sendall(json.dumps({"type": "hello", "token": token}).encode() + b"\n")
        os.dup2(sock.fileno(), 0)
        os.dup2(sock.fileno(), 1)
    except OSError as exc:
        sys.stderr.write(f"runner: cannot connect to the engine's channel socket {path}: {exc}\n")
        sys.stderr.flush()
        os._exit(1)
    finally:
        sock.close()
