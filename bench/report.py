"""One table, two renderings (terminal text and Markdown), the targets beside it, and the JSON.

Ratios divide by the `twilio-run --fork-process=false` row of the same handler. Targets are
printed as met / missed / n/a, never asserted: a run always finishes and writes its results.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from bench.loadgen import Cell
from bench.plan import BASELINE, HANDLERS, ROWS_BY_KEY, TARGETS, Plan, Target
from bench.results_model import Distribution, HandlerResult, RowResult

COLUMNS = (
    "row", "handler", "req/s c=32", "× tr-nofork", "p50 c=1", "p99 c=1", "p50 c=32", "p99 c=32", "errors",
    "CPU s/1k (server+workers)", "dockerd+shim s/1k", "MiB/idle worker", "cold p50/p95 ms", "docker run p50/p95 ms",
    "other load",
)


# Below this many completed requests CPU per request is mostly work for requests still in flight.
_MIN_REQUESTS_FOR_CPU = 20


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _rps_cell(cell: Cell) -> str:
    if cell.requests == 0:
        return f"0 (none in {cell.duration_s:.0f} s)"
    return f"{cell.rps:,.0f}" if cell.rps >= 10 else f"{cell.rps:.1f}"


def _latency_cells(cell: Cell) -> list[str]:
    """p50 and p99, or a lower bound when no request completed within the cell."""
    if cell.requests == 0:
        return [f"> {cell.duration_s * 1000:.0f}"] * 2
    return [_ms(cell.p50_ms), _ms(cell.p99_ms)]


def _dist(d: Distribution | None) -> str:
    return f"{d.p50:.0f} / {d.p95:.0f}" if d else "—"


def _cpu(h: HandlerResult, docker: bool) -> str:
    if h.c32.requests < _MIN_REQUESTS_FOR_CPU:
        return "—"
    if docker:
        return f"{h.cpu_engine_s_per_1k:.3f} ({h.cpu_server_s_per_1k:.3f}+{h.cpu_workers_s_per_1k:.3f})"
    return f"{h.cpu_server_s_per_1k:.3f}"


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _rps(rows: dict[str, RowResult], key: str, handler: str) -> float | None:
    row = rows.get(key)
    if row is None or not row.available or handler not in row.handlers:
        return None
    return row.handlers[handler].c32.rps


def table_rows(results: list[RowResult]) -> list[list[str]]:
    """The table's cells; an unavailable row is one line whose third cell says n/a and why."""
    by_key = {r.key: r for r in results}
    lines: list[list[str]] = []
    for row in results:
        if not row.available:
            lines.append([row.label, "—", f"n/a ({row.reason})"] + ["—"] * (len(COLUMNS) - 3))
            continue
        engine, docker = ROWS_BY_KEY[row.key].kind == "engine", ROWS_BY_KEY[row.key].docker
        for index, spec in enumerate(HANDLERS):
            h = row.handlers[spec.name]
            ratio = _ratio(h.c32.rps, _rps(by_key, BASELINE, spec.name))
            first = index == 0
            cold = (f"failed: {row.cold_error}" if row.cold_error and not row.cold else _dist(row.cold)) if first else ""
            lines.append([
                row.label if first else "", spec.name, _rps_cell(h.c32), f"{ratio:.2f}×" if ratio is not None else "—",
                *_latency_cells(h.c1), *_latency_cells(h.c32), str(h.errors),
                _cpu(h, docker), f"{h.cpu_daemons_s_per_1k:.3f}" if docker else "—",
                (f"{row.idle_worker_mib:.1f} (×{row.workers})" if row.idle_worker_mib is not None else "—") if first else "",
                cold if engine else ("—" if first else ""),
                (_dist(row.docker_run) if docker else "—") if first else "",
                f"{h.background_cores:.2f}",
            ])
    return lines


def render_text(results: list[RowResult]) -> str:
    lines = [list(COLUMNS)] + table_rows(results)
    unavailable = {i for i, cells in enumerate(lines) if cells[2].startswith("n/a (")}
    widths = [max(len(cells[i]) for n, cells in enumerate(lines) if n not in unavailable) for i in range(len(COLUMNS))]
    out = []
    for n, cells in enumerate(lines):
        if n in unavailable:
            out.append(f"{cells[0]:<{widths[0]}}  {cells[1]:<{widths[1]}}  {cells[2]}")
            continue
        out.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def render_markdown(results: list[RowResult]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [line(list(COLUMNS)), "|" + "|".join(["---"] * 2 + ["---:"] * (len(COLUMNS) - 2)) + "|"]
    out += [line(cells) for cells in table_rows(results)]
    return "\n".join(out)


# --- targets -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Verdict:
    target: str
    row: str
    detail: str
    verdict: str  # met, missed, n/a


def evaluate(results: list[RowResult]) -> list[Verdict]:
    by_key = {r.key: r for r in results}
    verdicts: list[Verdict] = []
    for target in TARGETS:
        rows = target.rows or tuple(r.key for r in results)
        for key in rows:
            row = by_key.get(key)
            if row is None:
                continue
            if not row.available:
                verdicts.append(Verdict(target.text, key, "row not available", "n/a"))
                continue
            verdicts.append(_judge(target, row, by_key))
    return verdicts


def _judge(target: Target, row: RowResult, by_key: dict[str, RowResult]) -> Verdict:
    parts: list[str] = []
    outcomes: list[bool | None] = []
    if target.kind == "zero_errors":
        ok = row.errors == 0
        detail = f"{row.errors} errors" + ("" if ok else ": " + _error_detail(row))
        return Verdict(target.text, row.key, detail, "met" if ok else "missed")
    if target.kind == "cold_ratio":
        if row.cold is None or row.docker_run is None:
            return Verdict(target.text, row.key, row.cold_error or "not measured", "n/a")
        ratio = row.cold.p50 / row.docker_run.p50
        ok = ratio <= target.factor
        return Verdict(target.text, row.key, f"{row.cold.p50:.0f} ms vs {row.docker_run.p50:.0f} ms = {ratio:.2f}×",
                       "met" if ok else "missed")
    for spec in HANDLERS:
        h = row.handlers[spec.name]
        if target.kind == "rps_ratio":
            assert target.against is not None
            ratio = _ratio(h.c32.rps, _rps(by_key, target.against, spec.name))
            outcomes.append(None if ratio is None else ratio >= target.factor)
            parts.append(f"{spec.name} {ratio:.2f}×" if ratio is not None else f"{spec.name} n/a")
        elif target.kind == "p50_margin":
            other = by_key.get(target.against or "")
            if other is None or not other.available:
                outcomes.append(None)
                parts.append(f"{spec.name} n/a")
                continue
            limit = other.handlers[spec.name].c1.p50_ms + target.margin_ms
            outcomes.append(h.c1.p50_ms <= limit)
            parts.append(f"{spec.name} {h.c1.p50_ms:.3f} ms vs ≤ {limit:.3f} ms")
    if any(o is False for o in outcomes):
        verdict = "missed"
    elif outcomes and all(o is True for o in outcomes):
        verdict = "met"
    else:
        verdict = "n/a"
    return Verdict(target.text, row.key, ", ".join(parts), verdict)


def _error_detail(row: RowResult) -> str:
    parts = []
    for name, h in row.handlers.items():
        detail: dict[str, int] = {}
        for cell_detail in (h.c1.error_detail, h.c32.error_detail):
            for kind, count in cell_detail.items():
                detail[kind] = detail.get(kind, 0) + count
        if h.errors:
            parts.append(f"{name} {h.errors} ({', '.join(f'{k} {v}' for k, v in detail.items()) or 'warm-up'})")
    return "; ".join(parts)


def render_targets(verdicts: list[Verdict], markdown: bool = False) -> str:
    out = []
    current = None
    for v in verdicts:
        if v.target != current:
            current = v.target
            out.append(f"- {v.target}" if markdown else f"  {v.target}")
        mark = {"met": "met", "missed": "MISSED", "n/a": "n/a"}[v.verdict]
        out.append(f"  - **{mark}** {v.row}: {v.detail}" if markdown else f"      {mark:<7} {v.row:<18} {v.detail}")
    return "\n".join(out)


# --- files -------------------------------------------------------------------------------------


def _row_json(row: RowResult) -> dict[str, Any]:
    data = dataclasses.asdict(row)
    data["cold"] = row.cold.to_json() if row.cold else None
    data["docker_run"] = row.docker_run.to_json() if row.docker_run else None
    data["errors"] = row.errors
    for name, h in row.handlers.items():
        data["handlers"][name]["cpu_engine_s_per_1k"] = round(h.cpu_engine_s_per_1k, 4)
    return data


def write(
    directory: Path, stem: str, plan: Plan, machine: dict[str, Any], results: list[RowResult],
    verdicts: list[Verdict], extra: dict[str, Any], header: str,
) -> tuple[Path, Path]:
    """`<stem>.json` and `<stem>.md` in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / f"{stem}.json", directory / f"{stem}.md"
    payload = {"plan": plan.to_json(), "machine": machine, "rows": [_row_json(r) for r in results],
               "targets": [dataclasses.asdict(v) for v in verdicts], **extra}
    json_path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    md = [header, "", render_markdown(results), "", "Targets (printed, not asserted):", "",
          render_targets(verdicts, markdown=True), ""]
    md_path.write_text("\n".join(md))
    return json_path, md_path
