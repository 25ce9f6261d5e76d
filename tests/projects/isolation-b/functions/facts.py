"""Reports, as JSON, what a worker can see and do; tests/test_isolation.py asserts on the facts.

Kept identical in isolation/ and isolation-b/ (the test checks), so each service probes the other.
It only connects where the test tells it (`targets`: the engine's port on 127.0.0.1 and the
host's own addresses), with a short timeout.
"""

import errno
import os
import socket
import threading
import time


def _error_name(exc):
    if isinstance(exc, socket.timeout):
        return "timeout"
    return errno.errorcode.get(exc.errno, type(exc).__name__) if getattr(exc, "errno", None) else type(exc).__name__


def _try_write(path):
    try:
        with open(path, "w") as handle:
            handle.write("probe")
    except OSError as exc:
        return _error_name(exc)
    try:
        os.unlink(path)
    except OSError:
        pass
    return "written"


def _status():
    fields = {}
    with open("/proc/self/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return {k: fields.get(k) for k in ("Uid", "Gid", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")}


def _mounts():
    out = {}
    try:
        with open("/proc/self/mounts") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) >= 4 and parts[1] in ("/", "/tmp"):
                    out[parts[1]] = parts[3]
    except OSError as exc:
        out["error"] = _error_name(exc)
    return out


def _interfaces():
    found = {}
    try:
        found["sys_class_net"] = sorted(os.listdir("/sys/class/net"))
    except OSError as exc:
        found["sys_class_net"] = _error_name(exc)
    try:
        with open("/proc/net/dev") as handle:
            found["proc_net_dev"] = sorted(line.split(":")[0].strip() for line in handle.readlines()[2:] if ":" in line)
    except OSError as exc:
        found["proc_net_dev"] = _error_name(exc)
    return found


def _connect(target):
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(2)
    try:
        sock.connect((host, int(port)))
        return "connected"
    except OSError as exc:
        return _error_name(exc)
    finally:
        sock.close()


def _process_texts():
    """Every process environment and command line this worker can read (pid → text, NULs as newlines)."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        for kind in ("environ", "cmdline"):
            try:
                with open(f"/proc/{pid}/{kind}", "rb") as handle:
                    out[f"{pid}/{kind}"] = handle.read().decode("utf-8", "replace").replace("\0", "\n")
            except OSError as exc:
                out[f"{pid}/{kind}"] = "unreadable: " + _error_name(exc)
    return out


def _files_text(root, limit=256 * 1024):
    """The names and (bounded) contents of the files under `root`."""
    out = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                with open(path, "rb") as handle:
                    out[path] = handle.read(limit).decode("utf-8", "replace")
            except OSError as exc:
                out[path] = "unreadable: " + _error_name(exc)
    return out


def handler(context, event, callback):
    mode = event.get("mode", "facts")
    identity = {"hostname": socket.gethostname(), "pid": os.getpid()}
    if mode == "write-tmp":
        with open(f"/tmp/{event['name']}", "w") as handle:
            handle.write(event["content"])
        return callback(None, {**identity, "tmp": sorted(os.listdir("/tmp"))})
    if mode == "list-tmp":
        return callback(None, {**identity, "tmp": sorted(os.listdir("/tmp"))})
    if mode == "leave-thread":
        # Still running after the answer: the runner reports the worker dirty, the engine replaces it.
        threading.Thread(target=time.sleep, args=(60,), daemon=True, name="left-behind").start()
        return callback(None, identity)
    targets = [t for t in event.get("targets", "").split(",") if t]
    return callback(None, {
        **identity,
        "uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
        "status": _status(),
        "mounts": _mounts(),
        "writes": {path: _try_write(path) for path in ("/etc/engine-probe", "/engine-probe", "/srv/project/engine-probe", "/tmp/engine-probe")},
        "interfaces": _interfaces(),
        "connect": {target: _connect(target) for target in targets},
        "environ": dict(os.environ),
        "processes": _process_texts(),
        "project_files": _files_text("/srv/project"),
        "tmp_files": _files_text("/tmp"),
        "context": {key: context[key] for key in context.keys()},
    })
