"""What a run produces, as plain dataclasses: written to JSON as is, rendered by `report`."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from bench.loadgen import Cell


@dataclass
class HandlerResult:
    """One handler on one row: the latency cell (c=1), the throughput cell (c=32), CPU per request."""

    c1: Cell
    c32: Cell
    warmup_errors: int
    errors: int  # over every wrk run of this handler (warm-up, c=1, c=32)
    cpu_server_s_per_1k: float  # server process tree during the c=32 cell
    cpu_workers_s_per_1k: float  # worker container cgroups during the c=32 cell (docker rows)
    cpu_daemons_s_per_1k: float  # dockerd + containerd + the workers' shims (docker rows)
    # CPUs kept busy during the c=32 cell by neither the row, the docker daemons nor wrk: other work
    # on the machine, competing with the row (0 on a quiet machine).
    background_cores: float = 0.0

    @property
    def cpu_engine_s_per_1k(self) -> float:
        return self.cpu_server_s_per_1k + self.cpu_workers_s_per_1k


@dataclass
class Distribution:
    samples_ms: list[float]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p95(self) -> float:
        ordered = sorted(self.samples_ms)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]

    def to_json(self) -> dict[str, object]:
        return {"p50_ms": round(self.p50, 1), "p95_ms": round(self.p95, 1), "n": len(self.samples_ms),
                "samples_ms": [round(s, 1) for s in self.samples_ms]}


@dataclass
class RowResult:
    key: str
    label: str
    available: bool = True
    reason: str = ""  # why the row is n/a
    handlers: dict[str, HandlerResult] = field(default_factory=dict)
    workers: int | None = None  # warm workers during the warm cells
    idle_worker_mib: float | None = None  # mean over the warm workers, measured idle after the load
    server_rss_mib: float | None = None
    cold: Distribution | None = None
    cold_error: str = ""
    cold_bootstrap_ms: float | None = None  # the engine's spawn → `ready`, mean over the cold workers
    docker_run: Distribution | None = None
    image: str | None = None
    settings: dict[str, object] = field(default_factory=dict)
    loadavg_before: str = ""
    background_cores_before: float = 0.0  # CPUs busy with other work just before the row started
    seconds: float = 0.0  # wall time this row took

    @property
    def errors(self) -> int:
        return sum(h.errors for h in self.handlers.values())
