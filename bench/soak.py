"""`python -m bench --soak DURATION`: hours of hostile traffic in minutes; does the engine stay flat?

One engine serves two services: `soak-ok` (bench/projects/steady-py, the SMS-webhook TwiML after
5 ms) and `soak-hostile` (bench/projects/soak-hostile: handlers that leave alarms, itimers,
grandchildren, threads, Workers behind, crash, eat memory, spin past a 1 s limit, toss cookies),
while clients also send huge headers and slowloris connections (bench/soak_load.py). Every minute,
and at the end, it samples the engine: RSS, open fds, threads, its managed containers (docker SDK,
by the engine's owner label), the directories under the engine's private TMPDIR, and the pool
sizes from /metrics. After the load the engine is stopped with SIGTERM and the soak checks that
nothing is left: no container, no process it started, no temp dir.

Pass: the well-behaved service answered every request right, the samples are flat (see
`flat_verdicts`), and nothing was left. Hostile kinds are counted, never judged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import accounting, machine, servers, soak_load, steady
from bench.plan import PROJECTS, REPO, RESULTS, ROWS_BY_KEY, Row

ROWS = ("runc-python", "runsc-python", "process-python")  # the backend under test; both languages run
DEFAULT_ROW = "runc-python"
SAMPLE_EVERY_S = 60.0
READY_TIMEOUT_S = 600.0  # a first start builds both services' images
STOP_TIMEOUT_S = 60.0
SPIN_LIMIT_S = 1
#: Flat: the last sample against the first (taken once both pools are warm, before any load).
RSS_SLACK_MIB, RSS_SLACK_RATIO = 30.0, 0.20
FD_SLACK, THREAD_SLACK = 16, 8


def parse_duration(text: str) -> float:
    """`30m`, `90s`, `1h`, `1h30m`, or plain seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (say 90s, 3m, 30m or 1h)")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


@dataclass
class Sample:
    t_s: float
    rss_mib: float
    fds: int
    threads: int
    containers: int | None  # None on the process backend
    dirs: int  # directories under the engine's TMPDIR (depth 2: its roots and their worker/socket dirs)
    pools: dict[str, dict[str, int]]  # service → state → workers
    ok_sent: int
    ok_errors: int
    hostile_sent: int


@dataclass
class Result:
    row: str
    duration_s: float
    token: str
    samples: list[Sample] = field(default_factory=list)
    ok_sent: int = 0
    ok_errors: int = 0
    ok_error_detail: dict[str, int] = field(default_factory=dict)
    ok_p50_ms: float | None = None
    ok_p99_ms: float | None = None
    hostile: dict[str, dict[str, int]] = field(default_factory=dict)
    tossed_cookies: int = 0
    worker_exits: dict[str, dict[str, int]] = field(default_factory=dict)  # service → reason → count
    engine_exit_code: int | None = None
    left_containers: list[str] = field(default_factory=list)
    left_processes: list[str] = field(default_factory=list)
    left_dirs: list[str] = field(default_factory=list)
    flat: dict[str, str] = field(default_factory=dict)
    passed: bool = False
    log: str = ""
    engine_commit: str = ""


# --- the engine under test ---------------------------------------------------------------------------


def _config(path: Path) -> None:
    path.write_text(
        f'[services.{soak_load.HOSTILE_SERVICE}.functions."/spin"]\ntime_limit_s = {SPIN_LIMIT_S}\n'
    )


def _start_engine(row: Row, tmpdir: Path, config: Path) -> servers.Server:
    port, admin = servers.free_port(), servers.free_port()
    command = [
        sys.executable, "-m", "engine", "serve",
        f"{soak_load.OK_SERVICE}={PROJECTS / 'steady-py'}", f"{soak_load.HOSTILE_SERVICE}={PROJECTS / 'soak-hostile'}",
        "--host", "127.0.0.1", "--port", str(port), "--admin-port", str(admin), "--domain", "localhost",
        "--backend", row.backend or "process", "--log-format", "json", "--config", str(config),
    ]
    if row.runtime:
        command += ["--runtime", row.runtime]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    env["TMPDIR"] = str(tmpdir)  # everything the engine makes in a temp dir is under here: counted, checked
    proc, log_path, err_path = servers._spawn("soak-engine", command, env, REPO)
    return servers.Server("soak-engine", proc, port, log_path, err_path, admin_port=admin, docker=row.docker)


# --- samples -----------------------------------------------------------------------------------------


def _status_field(pid: int, name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _dirs(tmpdir: Path) -> list[str]:
    found = []
    for top in sorted(tmpdir.iterdir()) if tmpdir.is_dir() else []:
        if top.is_dir():
            found.append(top.name)
            found += [f"{top.name}/{sub.name}" for sub in sorted(top.iterdir()) if sub.is_dir()]
    return found


class Containers:
    """The engine's managed containers, by its owner label, through the docker SDK."""

    def __init__(self, engine_pid: int) -> None:
        import docker

        from engine.backends.docker import MANAGED_LABEL, OWNER_LABEL

        self._client = docker.from_env(timeout=60)
        self._pid, self._managed, self._owner = engine_pid, MANAGED_LABEL, OWNER_LABEL

    def ids(self) -> list[str]:
        # The list call alone (no inspect per container): containers come and go while it runs.
        listed = self._client.api.containers(all=True, filters={"label": f"{self._managed}=true"})
        return [c["Id"] for c in listed
                if accounting.owner_matches((c.get("Labels") or {}).get(self._owner, ""), self._pid)]

    def close(self) -> None:
        self._client.close()


def _pools(admin_url: str) -> dict[str, dict[str, int]]:
    samples = steady.scrape(admin_url)
    pools: dict[str, dict[str, int]] = {}
    for (name, labels), value in samples.items():
        if name == "functions_engine_workers":
            d = dict(labels)
            per = pools.setdefault(d["service"], {"idle": 0, "busy": 0, "starting": 0})
            per[d["state"]] = per.get(d["state"], 0) + round(value)
    return pools


def take_sample(t_s: float, pid: int, tmpdir: Path, containers: Containers | None, admin_url: str,
                tally: soak_load.Tally) -> Sample:
    return Sample(
        t_s=round(t_s, 1), rss_mib=round(_status_field(pid, "VmRSS") / 1024, 1), fds=_fds(pid),
        threads=_status_field(pid, "Threads"), containers=len(containers.ids()) if containers else None,
        dirs=len(_dirs(tmpdir)), pools=_pools(admin_url), ok_sent=tally.ok_sent, ok_errors=tally.ok_errors,
        hostile_sent=sum(sum(c.values()) for c in tally.hostile.values()),
    )


# --- after the engine stopped: what is left ---------------------------------------------------------------


def leftover_processes(token: str, tmpdir: Path) -> list[str]:
    """Processes with the run's token in their argv (the hostile grandchildren) or a process backend
    worker's marker naming a root under the soak's TMPDIR."""
    marker = f"FUNCTIONS_ENGINE_ROOT={tmpdir}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if token.encode() in cmdline or any(e.startswith(marker) for e in environ.split(b"\0")):
            argv = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
            found.append(f"{entry}: {argv[:120]}")
    return found


def _kill_leftovers(token: str, tmpdir: Path) -> None:
    """The bench leaves nothing behind either: whatever the check found is killed after it is reported."""
    for line in leftover_processes(token, tmpdir):
        try:
            os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)
        except (ProcessLookupError, PermissionError, ValueError):
            pass


# --- verdicts and the report ----------------------------------------------------------------------------------


def flat_verdicts(samples: list[Sample], max_containers: int) -> dict[str, str]:
    """Each resource: `flat` or what grew, comparing the last sample with the first."""
    if len(samples) < 2:
        return {"samples": "fewer than two samples: nothing to compare"}
    first, last = samples[0], samples[-1]
    out = {}
    rss_bound = max(first.rss_mib + RSS_SLACK_MIB, first.rss_mib * (1 + RSS_SLACK_RATIO))
    out["rss"] = "flat" if last.rss_mib <= rss_bound else f"grew {first.rss_mib} → {last.rss_mib} MiB"
    out["fds"] = "flat" if last.fds <= first.fds + FD_SLACK else f"grew {first.fds} → {last.fds}"
    out["threads"] = "flat" if last.threads <= first.threads + THREAD_SLACK else f"grew {first.threads} → {last.threads}"
    if last.containers is not None:
        worst = max(s.containers or 0 for s in samples)
        out["containers"] = "flat" if worst <= max_containers else f"{worst} at once (pools allow {max_containers})"
    worst_dirs = max(s.dirs for s in samples)
    out["dirs"] = "flat" if worst_dirs <= first.dirs + max_containers else f"{first.dirs} → {worst_dirs}"
    return out


COLUMNS = ("t", "engine RSS MiB", "fds", "threads", "containers", "temp dirs", "soak-ok idle/busy/starting",
           "soak-hostile idle/busy/starting", "ok requests", "ok errors", "hostile requests")


def _pool(pools: dict[str, dict[str, int]], service: str) -> str:
    p = pools.get(service, {})
    return f"{p.get('idle', 0)}/{p.get('busy', 0)}/{p.get('starting', 0)}"


def render(result: Result) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" + "---:|" * (len(COLUMNS) - 1)]
    for s in result.samples:
        lines.append("| " + " | ".join([
            f"{s.t_s / 60:.1f} min", f"{s.rss_mib:.1f}", str(s.fds), str(s.threads),
            "—" if s.containers is None else str(s.containers), str(s.dirs),
            _pool(s.pools, soak_load.OK_SERVICE), _pool(s.pools, soak_load.HOSTILE_SERVICE),
            f"{s.ok_sent:,}", str(s.ok_errors), f"{s.hostile_sent:,}",
        ]) + " |")
    return "\n".join(lines)


def render_kinds(result: Result) -> str:
    lines = ["| hostile kind | outcomes (status or client-side) |", "|---|---|"]
    for kind, outcomes in result.hostile.items():
        lines.append(f"| `{kind}` | " + (", ".join(f"{k} ×{n}" for k, n in outcomes.items()) or "—") + " |")
    return "\n".join(lines)


def render_end(result: Result) -> list[str]:
    clean = not (result.left_containers or result.left_processes or result.left_dirs)
    return [
        f"Well-behaved service: {result.ok_sent:,} requests, {result.ok_errors} errors"
        + (f" {result.ok_error_detail}" if result.ok_errors else "")
        + f"; p50 {result.ok_p50_ms} ms, p99 {result.ok_p99_ms} ms.",
        f"Flat (last sample against the first): {result.flat}.",
        f"Worker exits by reason: {result.worker_exits}. Replies still tossing a `Domain=.localhost` cookie: "
        f"{result.tossed_cookies}.",
        f"After SIGTERM (engine exit code {result.engine_exit_code}): "
        + ("nothing left (no container, no process, no temp dir)." if clean else
           f"LEFT: containers {result.left_containers}, processes {result.left_processes}, dirs {result.left_dirs}."),
        f"Verdict: {'PASS' if result.passed else 'FAIL'}.",
    ]


# --- the run --------------------------------------------------------------------------------------------------


def _exits(admin_url: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (name, labels), value in steady.scrape(admin_url).items():
        if name == "functions_engine_worker_exits_total" and value:
            d = dict(labels)
            out.setdefault(d["service"], {})[d["reason"]] = round(value)
    return out


def run(duration_s: float, row_key: str | None, progress=print) -> int:
    row_key = row_key or DEFAULT_ROW
    if row_key not in ROWS:
        raise SystemExit(f"error: --soak runs on one of the engine rows {', '.join(ROWS)}; not {row_key}")
    row = ROWS_BY_KEY[row_key]
    token = f"soak-{uuid.uuid4().hex[:12]}"
    result = Result(row_key, duration_s, token, engine_commit=steady.engine_version())
    tmpdir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    engine_tmp = tmpdir / "engine-tmp"
    engine_tmp.mkdir()
    config = tmpdir / "soak.toml"
    _config(config)
    about = machine.describe()
    started_at = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    progress(f"bench soak: {duration_s:g} s on {row.label}; ok {soak_load.OK_RATE_PER_S:g} req/s, hostile "
             f"{soak_load.HOSTILE_RATE_PER_S:g} req/s over {len(soak_load.KINDS)} kinds; sample every "
             f"{SAMPLE_EVERY_S:g} s; load average {about['loadavg_at_start']}")
    server = _start_engine(row, engine_tmp, config)
    result.log = str(server.log_path.relative_to(REPO))
    containers: Containers | None = None
    tally = soak_load.Tally()
    begun = time.monotonic()
    try:
        server.wait_ready(READY_TIMEOUT_S)
        admin = f"http://127.0.0.1:{server.admin_port}"
        containers = Containers(server.pid) if row.docker else None
        stop_sampling = threading.Event()
        load_started = time.monotonic()

        def sample_now() -> None:
            s = take_sample(time.monotonic() - load_started, server.pid, engine_tmp, containers, admin, tally)
            result.samples.append(s)
            progress(render(dataclasses.replace(result, samples=[s])).splitlines()[-1])

        progress(render(dataclasses.replace(result, samples=[])))
        sample_now()

        def sampler() -> None:
            while not stop_sampling.wait(SAMPLE_EVERY_S):
                try:
                    sample_now()
                except Exception as exc:  # a failed scrape is reported, the soak goes on
                    progress(f"  sample failed: {type(exc).__name__}: {exc}")

        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        asyncio.run(soak_load.drive(server.base_url, duration_s, token, tally))
        stop_sampling.set()
        thread.join(120)
        time.sleep(2)  # the last `done` reports: gauges settle
        sample_now()
        result.worker_exits = _exits(admin)
        # Stop the engine as an operator would and look at what is left, before any clean-up of ours.
        server.proc.send_signal(signal.SIGTERM)
        try:
            result.engine_exit_code = server.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            result.engine_exit_code = None
        time.sleep(1)
        result.left_containers = containers.ids() if containers else []
        result.left_processes = leftover_processes(token, engine_tmp)
        result.left_dirs = _dirs(engine_tmp)
    except (servers.StartFailed, OSError) as exc:
        progress(f"soak aborted: {exc}")
        return 1
    finally:
        server.stop()  # idempotent; removes any container the engine left (after they were counted)
        if containers:
            containers.close()
        _kill_leftovers(token, engine_tmp)
        shutil.rmtree(tmpdir, ignore_errors=True)
    elapsed = time.monotonic() - begun
    result.ok_sent, result.ok_errors = tally.ok_sent, tally.ok_errors
    result.ok_error_detail = dict(tally.ok_error_detail)
    result.ok_p50_ms = steady.percentile(tally.ok_latency_ms, 50)
    result.ok_p99_ms = steady.percentile(tally.ok_latency_ms, 99)
    result.ok_p50_ms = round(result.ok_p50_ms, 1) if result.ok_p50_ms is not None else None
    result.ok_p99_ms = round(result.ok_p99_ms, 1) if result.ok_p99_ms is not None else None
    result.hostile, result.tossed_cookies = tally.hostile_summary(), tally.tossed_cookies
    from engine.config import Settings

    max_containers = 3 * int(Settings.model_fields["max_workers"].default)  # three pools: ok, hostile py, hostile js
    result.flat = flat_verdicts(result.samples, max_containers)
    clean = not (result.left_containers or result.left_processes or result.left_dirs)
    result.passed = (result.ok_errors == 0 and clean and result.engine_exit_code == 0
                     and all(v == "flat" for v in result.flat.values()))
    header = (machine.header(about, f"soak {duration_s:g} s", started_at, elapsed)
              + f" Row {row.label}; engine at commit {result.engine_commit}; ok service "
                f"{soak_load.OK_RATE_PER_S:g} req/s, hostile {soak_load.HOSTILE_RATE_PER_S:g} req/s "
                f"({', '.join(soak_load.KINDS)}).")
    body = [header, "", render(result), "", render_kinds(result), "", *render_end(result)]
    print()
    print("\n".join(body))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.md").write_text("\n".join(body) + "\n")
    (RESULTS / "soak.json").write_text(json.dumps(
        {"started_at": started_at, "seconds": round(elapsed, 1), "machine": about, **dataclasses.asdict(result)},
        indent=2, ensure_ascii=False) + "\n")
    print(f"\nwritten: bench/results/soak.md, bench/results/soak.json")
    return 0 if result.passed else 1
