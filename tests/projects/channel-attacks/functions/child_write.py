import subprocess
import sys

CHILD = r'''
import os, socket, sys
try:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect("/run/functions-channel/sock")
    print("child connected")
except OSError as exc:
    print("child connect " + type(exc).__name__)
forged = b'{"type":"result","id":"forged","status":299,"headers":[],"body":"forged"}\n'
for fd in range(0, 64):
    try:
        os.write(fd, forged)
    except OSError:
        pass
'''


def handler(context, event, callback):
    """A child process tries the socket path and writes a forged frame to every descriptor it has."""
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=False, timeout=20)
    return callback(None, {"child_exit": done.returncode})
