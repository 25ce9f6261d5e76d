"""Cold starts: an empty pool to the first response, beside a bare `docker run` of the same image.

The engine runs with `min_idle=0`, `max_workers=1` and a short idle timeout, so after every
request its idle reaper removes the worker. Each sample waits until the pool reports no worker
in any state and no worker exists (no container, no runner process), then times one request on a
fresh connection: connect → worker created and booted → `init`/`ready` → `invoke` → last byte.
One request to an unknown path first takes the front door's own first-request work off sample 1.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
import uuid

from bench import accounting, servers
from bench.plan import TRIVIAL, Plan, Row
from bench.results_model import Distribution

IDLE_TIMEOUT_S = 0.5  # the reaper runs every max(0.5, idle_timeout_s / 4) seconds
EMPTY_POOL_TIMEOUT_S = 30.0
BENCH_LABEL = "io.functions-engine.bench"  # on the bare `docker run` containers, for clean-up

_WORKERS = re.compile(r'^functions_engine_workers\{[^}]*\} ([0-9.e+-]+)$', re.M)
_BOOTSTRAP = re.compile(r'^functions_engine_worker_bootstrap_seconds_(sum|count)\{[^}]*\} ([0-9.e+-]+)$', re.M)


class ColdStartError(RuntimeError):
    """A cold request failed or the pool never emptied."""


def _metrics(server: servers.Server) -> str:
    assert server.admin_port is not None
    status, body = servers.get_status(server.admin_port, "/metrics")
    if status != 200:
        raise ColdStartError(f"/metrics answered {status}")
    return body


def _pool_size(server: servers.Server) -> float:
    return sum(float(v) for v in _WORKERS.findall(_metrics(server)))


def _mean_bootstrap_ms(server: servers.Server) -> float | None:
    """The engine's own spawn → `ready` time, averaged over every worker it started."""
    totals = {kind: float(value) for kind, value in _BOOTSTRAP.findall(_metrics(server))}
    return round(totals["sum"] / totals["count"] * 1000, 1) if totals.get("count") else None


def _has_worker(server: servers.Server) -> bool:
    """Whether a worker still exists: a container (docker) or a runner child process (process)."""
    if server.docker:
        return bool(accounting.engine_container_ids(server.pid, running_only=False))
    return len(accounting.process_tree(server.pid)) > 1


def _wait_empty(server: servers.Server) -> None:
    """Until the pool is empty by the engine's gauge *and* by the processes themselves.

    The gauge alone is not enough: right after a cold request it can read 0 while the worker is
    still busy (its first `_gauge()` runs before the worker is marked BUSY).
    """
    deadline = time.monotonic() + EMPTY_POOL_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.exited():
            raise ColdStartError(f"the engine exited: {server.failure()}")
        if _pool_size(server) == 0 and not _has_worker(server):
            return
        time.sleep(0.1)
    raise ColdStartError(f"the idle worker was not reaped within {EMPTY_POOL_TIMEOUT_S:.0f} s")


def engine_cold_starts(row: Row, plan: Plan, stack: contextlib.ExitStack) -> tuple[Distribution, float | None]:
    """Cold request times, and the engine's mean worker bootstrap (spawn → `ready`) over them."""
    server = servers.start_engine(
        f"{row.key}-cold", row, min_idle=0, max_workers=1, log_level=plan.engine.log_level,
        extra_env={"ENGINE_IDLE_TIMEOUT_S": str(IDLE_TIMEOUT_S)},
    )
    stack.callback(server.stop)
    samples: list[float] = []
    try:
        server.wait_ready(120.0)
        servers.get_status(server.port, "/__bench_warm_up__")  # a 404: the front door's first request
        for _ in range(plan.cold_runs):
            _wait_empty(server)
            reply = servers.request(server.port, TRIVIAL, timeout_s=120.0)
            if reply.status != 200 or TRIVIAL.expect_in_body not in reply.body:
                raise ColdStartError(f"cold request answered {reply.status}: {reply.body.strip()[:160]!r}")
            samples.append(reply.seconds * 1000)
        bootstrap_ms = _mean_bootstrap_ms(server)
    finally:
        server.stop()
    return Distribution(samples), bootstrap_ms


def bare_docker_runs(image: str, runtime: str, runs: int) -> Distribution:
    """`docker run --rm --network none --runtime R --entrypoint true IMAGE`, timed end to end.

    `--entrypoint true`: the image's entrypoint is the runner, which would wait for `init`; the
    baseline is the container's own life cycle (CLI, create, start, exit, remove).
    """
    samples = []
    for _ in range(runs):
        name = f"bench-docker-run-{uuid.uuid4().hex[:10]}"
        started = time.perf_counter()
        done = subprocess.run(
            ["docker", "run", "--rm", "--network", "none", "--runtime", runtime, "--entrypoint", "true",
             "--label", f"{BENCH_LABEL}=true", "--name", name, image],
            capture_output=True, text=True, timeout=120,
        )
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            accounting.remove_containers([name])
            raise ColdStartError(f"docker run failed: {done.stderr.strip()[:200]}")
        samples.append(elapsed * 1000)
    return Distribution(samples)


def remove_bench_containers() -> None:
    """Any bare `docker run` container left behind (an interrupted run)."""
    out = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={BENCH_LABEL}=true"],
                         capture_output=True, text=True, timeout=30).stdout.split()
    accounting.remove_containers(out)
