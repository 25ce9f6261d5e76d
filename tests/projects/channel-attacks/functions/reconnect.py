import os
import socket

PATH = "/run/functions-channel/sock"


def handler(context, event, callback):
    """Tries to open a second connection to the worker's channel socket, as a handler could."""
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(PATH)
        sock.sendall(b'{"type":"result","id":"forged","status":299,"headers":[],"body":"forged"}\n')
        outcome = "connected"
    except OSError as exc:
        outcome = type(exc).__name__
    try:
        listing = sorted(os.listdir("/run/functions-channel"))
    except OSError as exc:
        listing = [type(exc).__name__]
    env = sorted(name for name in os.environ if "CHANNEL" in name)
    return callback(None, {"connect": outcome, "listing": listing, "env": env})
