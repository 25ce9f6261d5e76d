"""`python -m bench --sweep`: the measurements behind the warm rows' engine settings.

For the docker/runc and process Python rows: warm workers (min_idle = max_workers) from 2 to 8 at
log level `warning`, and `info` (one JSON log line per invocation) beside `warning` at 4 and 8
workers. Each point: both handlers at c=32 (req/s, p99, CPU per request) and at c=1 (p50), plus
the idle memory of the pool. Written to bench/results/sweep.{json,md}.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time

from bench import measure
from bench.plan import RESULTS, ROWS_BY_KEY, EngineSettings, Plan
from bench.results_model import RowResult

SWEEP_ROWS = ("runc-python", "process-python")
POINTS = [EngineSettings(w, "warning") for w in (2, 4, 6, 8)] + [EngineSettings(w, "info") for w in (4, 8)]


def run(plan: Plan) -> int:
    lines = []
    data = []
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        for key in SWEEP_ROWS:
            for point in POINTS:
                print(f"{key}: {point.workers} workers, log level {point.log_level} ...", flush=True)
                result = measure.measure_row(ROWS_BY_KEY[key], dataclasses.replace(plan, engine=point), stack,
                                             progress=lambda line: print(line, flush=True),
                                             cold=False)  # cold starts do not depend on these settings
                data.append({"row": key, **dataclasses.asdict(point), "result": _summary(result)})
                lines.append(_line(key, point, result))
    header = ("| row | workers | log level | trivial req/s c=32 | realistic req/s c=32 | trivial p50 c=1 ms | "
              "trivial p99 c=32 ms | CPU s/1k (trivial) | MiB/idle worker | other load |")
    table = "\n".join([header, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|", *lines])
    print("\n" + table)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "sweep.json").write_text(json.dumps({"plan": plan.to_json(), "points": data}, indent=2) + "\n")
    (RESULTS / "sweep.md").write_text(f"# Engine settings sweep ({plan.mode}, {time.monotonic() - started:.0f} s)\n\n"
                                      + table + "\n")
    print("\nwritten: bench/results/sweep.json, bench/results/sweep.md")
    return 0


def _summary(result: RowResult) -> dict[str, object]:
    if not result.available:
        return {"available": False, "reason": result.reason}
    return {name: {"rps_c32": h.c32.rps, "p99_c32_ms": h.c32.p99_ms, "p50_c1_ms": h.c1.p50_ms,
                   "cpu_s_per_1k": round(h.cpu_engine_s_per_1k, 4), "errors": h.errors,
                   "background_cores": h.background_cores}
            for name, h in result.handlers.items()} | {"idle_worker_mib": result.idle_worker_mib}


def _line(key: str, point: EngineSettings, result: RowResult) -> str:
    if not result.available:
        return f"| {key} | {point.workers} | {point.log_level} | n/a ({result.reason}) | | | | | | |"
    t, r = result.handlers["trivial"], result.handlers["realistic"]
    return (f"| {key} | {point.workers} | {point.log_level} | {t.c32.rps:,.0f} | {r.c32.rps:,.0f} | {t.c1.p50_ms:.2f} | "
            f"{t.c32.p99_ms:.1f} | {t.cpu_engine_s_per_1k:.3f} | {result.idle_worker_mib} | {t.background_cores:.2f} |")
