"""The load generator: `wrk -t1`, bounded in time, against 127.0.0.1 only.

One wrk thread: the machine has few cores and wrk's own CPU would otherwise compete with the
server under test; one epoll thread drives 32 connections far faster than any row here answers.
wrk's own CPU time is recorded with every cell so the reader can see what it took.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bench.plan import BENCH_DIR, Handler

SCRIPT = BENCH_DIR / "lua" / "report.lua"
_MARK = "BENCH_JSON "


class LoadError(RuntimeError):
    """wrk could not run or printed no summary."""


@dataclass
class Cell:
    """One wrk run: a handler at one concurrency for a fixed time."""

    connections: int
    duration_s: float
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int  # socket errors (connect, read, write, timeout) + replies with status >= 400
    error_detail: dict[str, int] = field(default_factory=dict)
    wrk_cpu_s: float = 0.0


def wrk_path() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise LoadError("`wrk` is not on PATH; install it (Debian: apt-get install wrk)")
    return path


def run(base_url: str, handler: Handler, connections: int, duration_s: int, timeout_s: int) -> Cell:
    """Run wrk for `duration_s` seconds and parse its summary line."""
    host = urlsplit(base_url).hostname
    if host != "127.0.0.1":
        raise LoadError(f"the bench only loads 127.0.0.1, not {host!r}")
    command = [
        wrk_path(), "-t1", f"-c{connections}", f"-d{duration_s}s", f"--timeout={timeout_s}s",
        "-s", str(SCRIPT), base_url + handler.path, "--", handler.method, handler.body,
    ]
    started = time.monotonic()
    cpu_before = _children_cpu_s()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=duration_s + timeout_s + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise LoadError(f"wrk did not finish within {duration_s + timeout_s + 30} s") from None
    if proc.returncode != 0:
        raise LoadError(f"wrk exited with {proc.returncode}: {err.strip() or out.strip()}")
    summary = next((line[len(_MARK):] for line in out.splitlines() if line.startswith(_MARK)), None)
    if summary is None:
        raise LoadError(f"wrk printed no summary: {out.strip()} {err.strip()}")
    cell = parse_summary(json.loads(summary), connections, time.monotonic() - started)
    cell.wrk_cpu_s = round(_children_cpu_s() - cpu_before, 3)
    return cell


def parse_summary(data: dict, connections: int, wall_s: float) -> Cell:
    """A Cell from report.lua's JSON line (latencies in µs, duration in µs)."""
    duration_s = data["duration_us"] / 1e6 or wall_s
    errors = dict(data["errors"])
    lat = data["latency_us"]
    return Cell(
        connections=connections,
        duration_s=round(duration_s, 3),
        requests=data["requests"],
        rps=round(data["requests"] / duration_s, 1) if duration_s else 0.0,
        p50_ms=lat["p50"] / 1000, p90_ms=lat["p90"] / 1000, p99_ms=lat["p99"] / 1000, max_ms=lat["max"] / 1000,
        errors=sum(errors.values()),
        error_detail={k: v for k, v in errors.items() if v},
    )


def _children_cpu_s() -> float:
    """CPU of every child this process has waited for; wrk is the only one reaped during a cell."""
    usage = os.times()
    return usage.children_user + usage.children_system
