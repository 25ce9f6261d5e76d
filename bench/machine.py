"""The machine a run happened on, and what else was running there, for the results' header."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def _first(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unavailable"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def running_containers() -> int:
    """Containers running now (other engines, test suites): they share the CPUs with the bench."""
    try:
        out = subprocess.run(["docker", "ps", "-q"], capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return -1
    return len(out.stdout.split())


def describe() -> dict[str, object]:
    mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal"))
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "kernel": platform.release(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "node": _first(["node", "--version"]),
        "wrk": _first(["wrk", "--version"]).split(" [")[0],
        "docker": _first(["docker", "version", "--format", "{{.Server.Version}}"]),
        "runsc": _first(["runsc", "--version"]),
        "cgroup": "v2" if Path("/sys/fs/cgroup/cgroup.controllers").exists() else "v1",
        "loadavg_at_start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "other_containers_at_start": running_containers(),
    }


def header(machine: dict[str, object], mode: str, started: str, elapsed_s: float) -> str:
    return (
        f"Bench run `{mode}` at {started} ({elapsed_s:.0f} s) on {machine['nproc']} × {machine['cpu_model']}, "
        f"kernel {machine['kernel']}, {machine['memory_gib']} GiB; Docker {machine['docker']} (cgroup "
        f"{machine['cgroup']}), {machine['runsc']}; Python {machine['python']}, node {machine['node']}, "
        f"{machine['wrk']}. Load average at start {machine['loadavg_at_start']}, "
        f"{machine['other_containers_at_start']} other containers running."
    )
