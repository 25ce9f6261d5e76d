"""Measuring one row: start its server, check both handlers answer correctly, load them, stop.

Warm cells, per handler: a discarded warm-up at c=32 (`--quick`: before the first handler only),
the throughput cell at c=32 (with the CPU meter around it), the latency cell at c=1. Then, for the engine, the idle memory of its warm
workers, and (in `coldstart`) cold starts with an engine whose pool starts empty.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

from bench import accounting, coldstart, loadgen, servers
from bench.plan import HANDLERS, QUIET_CORES, TRIVIAL, Plan, Row
from bench.results_model import HandlerResult, RowResult

READY_TIMEOUT_S = 300.0  # the first engine start on a machine may build the service image
MiB = 1024 * 1024


class RowUnavailable(RuntimeError):
    """The row cannot be measured here; the message becomes its "n/a (reason)"."""


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine shows up here."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def wait_quiet(max_wait_s: float) -> float:
    """Wait (bounded) until other work uses under QUIET_CORES CPUs; returns the last reading."""
    deadline = time.monotonic() + max_wait_s
    while True:
        busy = accounting.background_cores()
        if busy < QUIET_CORES or time.monotonic() >= deadline:
            return busy


def start_server(row: Row, plan: Plan, name: str) -> servers.Server:
    if row.kind == "engine":
        return servers.start_engine(
            name, row, min_idle=plan.engine.workers, max_workers=plan.engine.workers, log_level=plan.engine.log_level,
        )
    if row.kind == "twilio-run":
        return servers.start_twilio_run(name, row)
    return servers.start_aiohttp(name)


def check_handlers(server: servers.Server) -> None:
    """Each handler answers with its expected status and body, or the row is n/a."""
    for handler in HANDLERS:
        try:
            reply = servers.request(server.port, handler)
        except OSError as exc:
            raise RowUnavailable(f"{handler.path}: no reply ({exc})") from exc
        if reply.status != handler.expect_status or handler.expect_in_body not in reply.body:
            raise RowUnavailable(f"{handler.path} answered {reply.status}: {reply.body.strip()[:160]!r}")


def measure_row(row: Row, plan: Plan, stack: contextlib.ExitStack, progress=print, *, cold: bool = True) -> RowResult:
    """Every measurement of one row; an unavailable row comes back with `available=False`."""
    background = wait_quiet(plan.quiet_wait_s)
    if background >= QUIET_CORES:
        progress(f"  warning: other work keeps {background:.1f} CPUs busy; measuring anyway")
    result = RowResult(row.key, row.label, loadavg_before=loadavg(), background_cores_before=round(background, 2))
    started = time.monotonic()
    if row.kind == "engine":
        result.settings = {"backend": row.backend, "runtime": row.runtime, "min_idle": plan.engine.workers,
                           "max_workers": plan.engine.workers, "log_level": plan.engine.log_level}
    server = start_server(row, plan, row.key)
    stack.callback(server.stop)
    try:
        server.wait_ready(READY_TIMEOUT_S, probe=TRIVIAL)
        check_handlers(server)
        _warm_cells(server, row, plan, result, progress)
    except (servers.StartFailed, RowUnavailable, loadgen.LoadError, subprocess.SubprocessError) as exc:
        result.available = False
        result.reason = str(exc).removeprefix(f"{row.key}: ")
        return result
    finally:
        server.stop()
        result.seconds = round(time.monotonic() - started, 1)
    if row.kind == "engine" and cold:
        _cold(row, plan, stack, result, progress)
        result.seconds = round(time.monotonic() - started, 1)
    return result


def _warm_cells(server: servers.Server, row: Row, plan: Plan, result: RowResult, progress) -> None:
    meter = accounting.CpuMeter(server.pid, engine_containers=server.docker)
    for index, handler in enumerate(HANDLERS):
        warm = (loadgen.run(server.base_url, handler, plan.connections, plan.warmup_s, plan.wrk_timeout_s)
                if index == 0 or plan.warmup_every_handler else None)
        warm_errors = warm.errors if warm else 0
        accounting.wait_settled(server.pid, plan.settle_max_s)
        before = meter.sample()
        c32 = loadgen.run(server.base_url, handler, plan.connections, plan.c32_s, plan.wrk_timeout_s)
        used = accounting.CpuMeter.delta(before, meter.sample())
        accounting.wait_settled(server.pid, plan.settle_max_s)
        c1 = loadgen.run(server.base_url, handler, 1, plan.c1_s, plan.wrk_timeout_s)
        per_1k = 1000 / c32.requests if c32.requests else 0.0
        ours = used.server_s + used.workers_s + used.daemons_s + c32.wrk_cpu_s
        result.handlers[handler.name] = HandlerResult(
            c1=c1, c32=c32, warmup_errors=warm_errors, errors=warm_errors + c32.errors + c1.errors,
            cpu_server_s_per_1k=round(used.server_s * per_1k, 4),
            cpu_workers_s_per_1k=round(used.workers_s * per_1k, 4),
            cpu_daemons_s_per_1k=round(used.daemons_s * per_1k, 4),
            background_cores=round(max(0.0, used.machine_s - ours) / c32.duration_s, 2),
        )
        progress(f"  {row.key} {handler.name}: {c32.rps:,.0f} req/s at c={plan.connections}, "
                 f"p50 {c1.p50_ms:.2f} ms at c=1, errors {result.handlers[handler.name].errors}")
    time.sleep(0.5)  # let the last invocations report `done` and the workers go idle
    result.server_rss_mib = round(accounting.process_rss_bytes(server.pid) / MiB, 1)
    if row.kind == "engine":
        _idle_memory(server, result)


def _idle_memory(server: servers.Server, result: RowResult) -> None:
    """Mean memory of the warm workers, idle after the load: cgroup (docker) or runner RSS (process)."""
    if server.docker:
        containers = accounting.inspect_containers(accounting.engine_container_ids(server.pid))
        sizes = [accounting.container_memory_bytes(c.id) for c in containers]
        sizes = [s for s in sizes if s is not None]
        if containers:
            result.image = containers[0].image
    else:
        sizes = [accounting.process_rss_bytes(pid) for pid in accounting.process_tree(server.pid) if pid != server.pid]
    result.workers = len(sizes)
    if sizes:
        result.idle_worker_mib = round(sum(sizes) / len(sizes) / MiB, 1)


def _cold(row: Row, plan: Plan, stack: contextlib.ExitStack, result: RowResult, progress) -> None:
    try:
        result.cold, result.cold_bootstrap_ms = coldstart.engine_cold_starts(row, plan, stack)
    except (servers.StartFailed, coldstart.ColdStartError, OSError, subprocess.SubprocessError) as exc:
        result.cold_error = str(exc)
    if row.docker and result.image:
        try:
            result.docker_run = coldstart.bare_docker_runs(result.image, row.runtime or "runc", plan.cold_runs)
        except (coldstart.ColdStartError, OSError, subprocess.SubprocessError) as exc:
            result.cold_error = (result.cold_error + "; " if result.cold_error else "") + str(exc)
    cold = (f"p50 {result.cold.p50:.0f} ms (engine bootstrap {result.cold_bootstrap_ms} ms)" if result.cold
            else f"failed ({result.cold_error})")
    base = f", bare docker run p50 {result.docker_run.p50:.0f} ms" if result.docker_run else ""
    progress(f"  {row.key} cold start: {cold}{base}")
