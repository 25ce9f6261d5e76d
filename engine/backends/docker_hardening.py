"""How a worker container is hardened, and the check that Docker really applied it.

`host_config` is what a worker is created with (DESIGN.md's container defaults, limits from the
worker spec); `hardening_problems` reads the created container's HostConfig back and lists every
way it falls short, because Docker silently drops limits it cannot enforce. A container with any
problem is refused before it starts.
"""

from __future__ import annotations

from typing import Any

import docker.types

from engine.backends.base import WorkerSpec

WORKER_USER = "10001:10001"  # the runner image's non-root user
LOG_MAX_BYTES = "1m"  # json-file log cap, when that driver is chosen

#: Default pids limit per OCI runtime. runc counts only the worker's own processes and threads.
#: runsc puts the whole gVisor sandbox (Sentry, gofer and their Go threads) in the container's pids
#: cgroup: an idle Python worker already uses ~55-60 of them, a 16-thread handler ~92, eight child
#: processes ~104; so it gets 64 on top of that baseline.
DEFAULT_PIDS_LIMIT = {"runc": 64, "runsc": 128}


def default_pids_limit(runtime: str) -> int:
    """The pids limit a worker gets under `runtime` when none is configured."""
    return DEFAULT_PIDS_LIMIT.get(runtime, DEFAULT_PIDS_LIMIT["runc"])


def host_config(spec: WorkerSpec, runtime: str, log_driver: str, channel_bind: str | None = None) -> dict[str, Any]:
    """The create_host_config() arguments of one worker: the hardening of DESIGN.md, limits from the spec."""
    limits = spec.limits
    if log_driver == "json-file":
        log_config = docker.types.LogConfig(type="json-file", config={"max-size": LOG_MAX_BYTES, "max-file": "1"})
    else:
        log_config = docker.types.LogConfig(type="none", config={})
    return dict(
        network_mode="none",
        read_only=True,
        tmpfs={"/tmp": f"size={limits.tmpfs_bytes},mode=1777,noexec,nosuid,nodev"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        privileged=False,
        pids_limit=limits.pids,
        mem_limit=limits.memory_bytes,
        memswap_limit=limits.memory_bytes,
        nano_cpus=int(limits.cpus * 1e9),
        ulimits=[
            docker.types.Ulimit(name="nofile", soft=limits.nofile, hard=limits.nofile),
            docker.types.Ulimit(name="fsize", soft=limits.fsize_bytes, hard=limits.fsize_bytes),
            docker.types.Ulimit(name="core", soft=0, hard=0),
        ],
        init=True,
        log_config=log_config,
        runtime=runtime,
        ipc_mode="private",
        cgroupns="private",
        binds=[channel_bind] if channel_bind else None,  # the worker's channel directory, read-only
    )


def mount_problems(mounts: list[dict[str, Any]], channel_bind: str) -> list[str]:
    """How a created container's mounts (inspect's top-level `Mounts`) differ from the one allowed:
    the channel directory, read-only, at the channel path."""
    source, destination, _ = channel_bind.split(":")
    got = [(m.get("Source"), m.get("Destination"), m.get("RW")) for m in mounts or []]
    if got != [(source, destination, False)]:
        return [f"mounts are {got!r}, expected only {source} at {destination}, read-only"]
    return []


def hardening_problems(host_config: dict[str, Any], spec: WorkerSpec, runtime: str, log_driver: str,
                       channel_bind: str | None = None) -> list[str]:
    """Every way a created container's HostConfig falls short of the worker hardening (empty = all in force).

    The one host mount allowed is `channel_bind` (the worker's channel directory), exactly as given:
    that host path only, at the channel path, read-only.
    """
    limits = spec.limits
    problems: list[str] = []

    def expect(key: str, want: Any) -> None:
        got = host_config.get(key)
        if got != want:
            problems.append(f"{key} is {got!r}, expected {want!r}")

    expect("Memory", limits.memory_bytes)
    expect("MemorySwap", limits.memory_bytes)
    expect("NanoCpus", int(limits.cpus * 1e9))
    expect("PidsLimit", limits.pids)
    expect("ReadonlyRootfs", True)
    expect("NetworkMode", "none")
    expect("Privileged", False)
    expect("Init", True)
    expect("Runtime", runtime)
    if "ALL" not in (host_config.get("CapDrop") or []):
        problems.append(f"CapDrop is {host_config.get('CapDrop')!r}, expected ALL")
    if host_config.get("CapAdd"):
        problems.append(f"CapAdd is {host_config.get('CapAdd')!r}, expected none")
    if not any(opt in ("no-new-privileges", "no-new-privileges:true") for opt in host_config.get("SecurityOpt") or []):
        problems.append(f"SecurityOpt is {host_config.get('SecurityOpt')!r}, expected no-new-privileges")
    tmpfs = (host_config.get("Tmpfs") or {}).get("/tmp", "")
    for option in ("noexec", "nosuid", "nodev", f"size={limits.tmpfs_bytes}"):
        if option not in tmpfs.split(","):
            problems.append(f"Tmpfs /tmp is {tmpfs!r}, missing {option}")
    ulimits = {u.get("Name"): (u.get("Soft"), u.get("Hard")) for u in host_config.get("Ulimits") or []}
    for name, value in (("nofile", limits.nofile), ("fsize", limits.fsize_bytes), ("core", 0)):
        if ulimits.get(name) != (value, value):
            problems.append(f"ulimit {name} is {ulimits.get(name)!r}, expected {value}")
    binds = host_config.get("Binds") or []
    if binds != ([channel_bind] if channel_bind else []):
        problems.append(f"the container has host mounts: Binds is {binds!r}, expected only the channel "
                        f"directory {channel_bind!r}")
    elif channel_bind and not channel_bind.endswith(":ro"):
        problems.append(f"the channel directory mount {channel_bind!r} is not read-only")
    if host_config.get("Mounts") or host_config.get("VolumesFrom"):
        problems.append("the container has host mounts")
    for key in ("PidMode", "IpcMode", "UTSMode", "UsernsMode", "CgroupnsMode"):
        if host_config.get(key) == "host":
            problems.append(f"{key} is host")
    if host_config.get("Devices"):
        problems.append("the container has host devices")
    if (host_config.get("LogConfig") or {}).get("Type") != log_driver:
        problems.append(f"LogConfig is {host_config.get('LogConfig')!r}, expected {log_driver}")
    return problems
