"""CPU and memory of what a row runs: /proc for processes, cgroup v1/v2 files for containers.

Read-only and Linux-only. A process tree's CPU is utime+stime+cutime+cstime of every member, so
children that were forked and reaped inside the window (twilio-run's default mode) are counted
through their parent's cutime/cstime.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# The engine's labels on its worker containers; the owner label is `host/boot/pid/start-ticks`.
from engine.backends.docker import MANAGED_LABEL, OWNER_LABEL

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_CGROUP = Path("/sys/fs/cgroup")


# --- processes ---------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (field 3 onwards), or None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def process_cpu_s(pid: int, *, children: bool = True) -> float:
    """utime+stime (+ cutime+cstime of reaped children) of one process, in seconds; 0 if gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime (fields 16, 17)
    return ticks / _TICKS


def process_rss_bytes(pid: int) -> int:
    fields = _stat_fields(pid)
    return int(fields[21]) * _PAGE if fields else 0  # rss in pages (field 24)


def parent_pid(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[1]) if fields else None


def process_tree(root: int) -> list[int]:
    """`root` and every live descendant."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            ppid = parent_pid(int(entry))
            if ppid is not None:
                children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def tree_cpu_s(root: int) -> float:
    return sum(process_cpu_s(pid) for pid in process_tree(root))


def wait_settled(root: int, max_wait_s: float, window_s: float = 0.25, idle_cores: float = 0.05) -> float:
    """Wait (bounded) until a process tree is quiet, e.g. forks still answering a finished load."""
    deadline = time.monotonic() + max_wait_s
    while True:
        before = tree_cpu_s(root)
        time.sleep(window_s)
        busy = (tree_cpu_s(root) - before) / window_s
        if busy < idle_cores or time.monotonic() >= deadline:
            return busy


def pids_named(*names: str) -> list[int]:
    """Processes whose command name (comm) is one of `names`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                comm = Path(f"/proc/{entry}/comm").read_text().strip()
            except OSError:
                continue
            if comm in names:
                found.append(int(entry))
    return found


def machine_busy_s() -> float:
    """CPU seconds all CPUs spent busy since boot (user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICKS


def background_cores(window_s: float = 0.5) -> float:
    """How many CPUs the machine keeps busy right now, the bench idle (other work on the host)."""
    before = machine_busy_s()
    time.sleep(window_s)
    return (machine_busy_s() - before) / window_s


# --- containers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Container:
    id: str
    image: str
    pid: int  # the container's first process on the host (docker-init here); its parent is the shim

    @property
    def shim_pid(self) -> int | None:
        return parent_pid(self.pid) if self.pid else None


def _docker(*args: str, timeout_s: float = 30) -> str:
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True, timeout=timeout_s).stdout


def owner_matches(label: str, pid: int) -> bool:
    """Whether an engine owner label (`host/boot/pid/ticks`) names the engine process `pid`."""
    parts = label.split("/")
    return len(parts) == 4 and parts[0] == os.uname().nodename and parts[2] == str(pid)


def engine_container_ids(engine_pid: int, *, running_only: bool = True) -> list[str]:
    """Ids of the worker containers the engine process `engine_pid` made (from the owner label)."""
    out = _docker(
        "ps", *(() if running_only else ("--all",)), "--no-trunc", "--filter", f"label={MANAGED_LABEL}=true",
        "--format", f'{{{{.ID}}}}\t{{{{.Label "{OWNER_LABEL}"}}}}',
    )
    ids = []
    for line in out.splitlines():
        cid, _, owner = line.partition("\t")
        if owner_matches(owner, engine_pid):
            ids.append(cid)
    return ids


def inspect_containers(ids: list[str]) -> list[Container]:
    if not ids:
        return []
    out = _docker("inspect", "--format", "{{.Id}}\t{{.Config.Image}}\t{{.State.Pid}}", *ids)
    found = []
    for line in out.splitlines():
        cid, image, pid = line.split("\t")
        found.append(Container(cid, image, int(pid)))
    return found


def remove_containers(ids: list[str]) -> None:
    if ids:
        subprocess.run(["docker", "rm", "--force", *ids], capture_output=True, timeout=120)


def _cgroup_file(controller: str, cid: str, name: str) -> Path | None:
    """The cgroup file of a docker container: v1 (cgroupfs or systemd driver) or v2."""
    for path in (
        _CGROUP / controller / "docker" / cid / name,
        _CGROUP / controller / "system.slice" / f"docker-{cid}.scope" / name,
        _CGROUP / "system.slice" / f"docker-{cid}.scope" / name,  # v2, systemd driver
        _CGROUP / "docker" / cid / name,  # v2, cgroupfs driver
    ):
        if path.exists():
            return path
    return None


def container_cpu_s(cid: str) -> float | None:
    """CPU used by everything in the container's cgroup (for runsc: the gVisor sandbox too)."""
    v1 = _cgroup_file("cpuacct", cid, "cpuacct.usage")
    if v1 is not None:
        return int(v1.read_text()) / 1e9
    v2 = _cgroup_file("", cid, "cpu.stat")
    if v2 is not None:
        for line in v2.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
    return None


def container_memory_bytes(cid: str) -> int | None:
    """Memory in use as `docker stats` shows it: usage minus inactive file cache."""
    v1 = _cgroup_file("memory", cid, "memory.usage_in_bytes")
    if v1 is not None:
        usage = int(v1.read_text())
        stat = _cgroup_file("memory", cid, "memory.stat")
        inactive = _stat_value(stat, "total_inactive_file") if stat else 0
        return usage - inactive
    v2 = _cgroup_file("", cid, "memory.current")
    if v2 is not None:
        stat = _cgroup_file("", cid, "memory.stat")
        return int(v2.read_text()) - (_stat_value(stat, "inactive_file") if stat else 0)
    return None


def _stat_value(path: Path, key: str) -> int:
    for line in path.read_text().splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


# --- a CPU meter around one load cell ----------------------------------------------------------


@dataclass
class CpuSample:
    server_s: float  # the server's process tree (engine, twilio-run and forks, aiohttp)
    workers_s: float  # worker containers' cgroups (docker rows)
    daemons_s: float  # dockerd + containerd + the workers' shims (docker rows)
    machine_s: float  # every CPU of the machine, whoever used it
    per_container: dict[str, float]


class CpuMeter:
    """CPU of a server and, for the engine on docker, of its workers and the docker daemons."""

    def __init__(self, server_pid: int, engine_containers: bool) -> None:
        self.server_pid = server_pid
        self.engine_containers = engine_containers
        self._daemons = pids_named("dockerd", "containerd")

    def sample(self) -> CpuSample:
        server = tree_cpu_s(self.server_pid)
        per_container: dict[str, float] = {}
        daemons = sum(process_cpu_s(pid, children=False) for pid in self._daemons)
        if self.engine_containers:
            for container in inspect_containers(engine_container_ids(self.server_pid)):
                used = container_cpu_s(container.id)
                if used is not None:
                    per_container[container.id] = used
                shim = container.shim_pid
                if shim:
                    daemons += process_cpu_s(shim, children=False)
        return CpuSample(server, sum(per_container.values()), daemons, machine_busy_s(), per_container)

    @staticmethod
    def delta(before: CpuSample, after: CpuSample) -> CpuSample:
        """After minus before; a container that appeared in between counts from zero."""
        workers = sum(used - before.per_container.get(cid, 0.0) for cid, used in after.per_container.items())
        return CpuSample(after.server_s - before.server_s, workers, after.daemons_s - before.daemons_s,
                         after.machine_s - before.machine_s, {})
