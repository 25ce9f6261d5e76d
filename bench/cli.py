"""`python -m bench`: run the rows, print one table with the targets, write it to bench/results/."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import signal
import sys
import time
from datetime import datetime, timezone
from typing import Any

from bench import coldstart, machine, measure, report, tools
from bench.plan import FULL, QUICK, RESULTS, ROWS, ROWS_BY_KEY, EngineSettings, Plan
from bench.results_model import RowResult


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Benchmark the engine against twilio-run "
                                     "and bare aiohttp on 127.0.0.1 (see bench/README.md).")
    parser.add_argument("--quick", action="store_true", help="1-2 s cells and 3 cold starts: under two minutes")
    parser.add_argument("--rows", help=f"comma-separated subset of rows: {', '.join(r.key for r in ROWS)}")
    parser.add_argument("--workers", type=int, help="warm workers of the engine rows (min_idle = max_workers)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="engine log level")
    profile = parser.add_mutually_exclusive_group()
    profile.add_argument("--profile", dest="profile", action="store_true", default=None,
                         help="also profile the engine under load with py-spy (default: on for full runs)")
    profile.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--sweep", action="store_true",
                        help="instead of the table: measure the engine's warm-row settings (workers, log level)")
    parser.add_argument("--steady", action="store_true",
                        help="instead of the table: cold starts under 20 req/s with bursts, engine pool defaults "
                             "(rows runc-python [default], runsc-python, process-python; 60 s per case, 20 s with "
                             "--quick); see bench/steady.py")
    parser.add_argument("--soak", metavar="DURATION",
                        help="instead of the table: a well-behaved service beside hostile handlers and clients for "
                             "DURATION (90s, 3m, 30m), sampling the engine every minute; one row of runc-python "
                             "[default], runsc-python, process-python; see bench/soak.py")
    parser.add_argument("--many", type=int, nargs="?", const=500, metavar="N",
                        help="instead of the table: N one-function services on one engine (docker runc, default "
                             "500): start-up, one round to each, 90/10 traffic under the warm budget; see "
                             "bench/many.py")
    parser.add_argument("--many-steady-s", type=float, default=60.0, help="seconds of 90/10 traffic for --many")
    parser.add_argument("--many-tail", default="even",
                        help="how --many spreads the 10 %% of requests over the 90 %% of services outside the hot "
                             "set: even (default) or zipf:S (Zipf's law, exponent S); see bench/warm_sim.py")
    parser.add_argument("--many-skip-steady", action="store_true", help="--many: start-up and the round only")
    return parser


def make_plan(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else FULL
    engine = EngineSettings(
        workers=args.workers or plan.engine.workers, log_level=args.log_level or plan.engine.log_level,
    )
    rows = tuple(k.strip() for k in args.rows.split(",")) if args.rows else plan.rows
    unknown = [k for k in rows if k not in ROWS_BY_KEY]
    if unknown:
        raise SystemExit(f"error: unknown rows {', '.join(unknown)}; choose from {', '.join(ROWS_BY_KEY)}")
    return dataclasses.replace(plan, engine=engine, rows=rows)


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through every `finally`: servers stopped, containers removed


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.many:
        from bench import many

        signal.signal(signal.SIGTERM, _terminate)
        tools.require("docker")
        return many.run(args.many, args.many_steady_s, tail=args.many_tail, steady=not args.many_skip_steady)
    if args.soak:
        return _soak(parser, args)
    if args.steady:
        return _steady(parser, args)
    plan = make_plan(args)
    signal.signal(signal.SIGTERM, _terminate)
    tools.require("wrk", "docker", "node")
    if args.sweep:
        from bench import sweep

        return sweep.run(plan)
    if any(ROWS_BY_KEY[k].kind == "twilio-run" for k in plan.rows):
        tools.ensure_twilio_run()
    do_profile = plan.mode == "full" if args.profile is None else args.profile
    started_at = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    about = machine.describe()
    print(f"bench {plan.mode}: {len(plan.rows)} rows; wrk -t1, c=1 for {plan.c1_s} s and c={plan.connections} for "
          f"{plan.c32_s} s per handler; engine warm rows: {plan.engine.workers} workers, log level "
          f"{plan.engine.log_level}; load average {about['loadavg_at_start']}", flush=True)
    results: list[RowResult] = []
    extra: dict[str, Any] = {}
    begun = time.monotonic()
    try:
        with contextlib.ExitStack() as stack:
            for key in plan.rows:
                row = ROWS_BY_KEY[key]
                print(f"{row.label} ...", flush=True)
                result = measure.measure_row(row, plan, stack, progress=lambda line: print(line, flush=True))
                if not result.available:
                    print(f"  n/a ({result.reason})", flush=True)
                results.append(result)
            if do_profile:
                from bench import profiling

                extra["profile"] = profiling.run(plan, stack)
    finally:
        coldstart.remove_bench_containers()
    elapsed = time.monotonic() - begun
    verdicts = report.evaluate(results)
    header = machine.header(about, plan.mode, started_at, elapsed)
    print()
    print(header)
    print()
    print(report.render_text(results))
    print()
    print("Targets (printed, not asserted):")
    print(report.render_targets(verdicts))
    # A run of some rows only must not overwrite the last complete table.
    stem = plan.mode if set(plan.rows) == set(ROWS_BY_KEY) else f"{plan.mode}-partial"
    json_path, md_path = report.write(RESULTS, stem, plan, about, results, verdicts, extra, header)
    print(f"\nwritten: {json_path.relative_to(RESULTS.parent.parent)}, {md_path.relative_to(RESULTS.parent.parent)}")
    return 0


def _steady(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """`--steady`: the engine's own pool settings are the point, so the warm-row options do not apply."""
    from bench import steady

    clashing = [flag for flag, value in (("--sweep", args.sweep), ("--workers", args.workers),
                                         ("--log-level", args.log_level), ("--profile", args.profile)) if value]
    if clashing:
        parser.error(f"--steady runs the engine with its default settings; drop {', '.join(clashing)}")
    rows = tuple(k.strip() for k in args.rows.split(",") if k.strip()) if args.rows else None
    signal.signal(signal.SIGTERM, _terminate)
    if any(ROWS_BY_KEY.get(k) is not None and ROWS_BY_KEY[k].docker for k in rows or steady.DEFAULT_ROWS):
        tools.require("docker")
    return steady.run(rows, args.quick)


def _soak(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """`--soak DURATION`: one engine, its default settings, the backend of one row."""
    from bench import soak

    clashing = [flag for flag, value in (("--steady", args.steady), ("--sweep", args.sweep), ("--quick", args.quick),
                                         ("--workers", args.workers), ("--log-level", args.log_level),
                                         ("--profile", args.profile)) if value]
    if clashing:
        parser.error(f"--soak runs one engine with its default settings; drop {', '.join(clashing)}")
    try:
        duration_s = soak.parse_duration(args.soak)
    except ValueError as exc:
        parser.error(str(exc))
    rows = [k.strip() for k in args.rows.split(",") if k.strip()] if args.rows else []
    if len(rows) > 1:
        parser.error("--soak runs one row at a time")
    signal.signal(signal.SIGTERM, _terminate)
    if not rows or ROWS_BY_KEY.get(rows[0]) is None or ROWS_BY_KEY[rows[0]].docker:
        tools.require("docker")
    return soak.run(duration_s, rows[0] if rows else None)


if __name__ == "__main__":
    sys.exit(main())
