"""Cold starts under a steady load with bursts: `python -m bench --steady` (see bench/README.md).

The pool's promise: `min_idle` workers stay ready and a taken worker's replacement starts at once,
so under a steady load with bursts fewer than 1 % of invocations wait for a new worker. This
measures it. Per row and handler variant, a fresh engine with the engine's *default* pool
settings serves `projects/steady-py` (one function, `work`: the SMS-webhook TwiML reply after an
`ms`-long wait, 5 ms or 100 ms); as soon as `/readyz` answers 200, an open-loop load is sent to
127.0.0.1: Poisson arrivals at 20 requests/s plus, every 5 s, a burst of 10-20 requests at the same
instant (sizes from a seeded generator, so every run sends the same schedule). Requests are sent at
their scheduled time whether or not earlier ones have been answered. `/metrics` is read before and
after; the cold-start count, the invocation count and the statuses are the engine's own, and the
engine's JSON log (its default level, `info`: one line per invocation with `cold`) says which
requests were the cold ones, joined to the client's by `X-Request-Id`.

`arrivals`, `drive`, `scrape` and `engine_delta` are also what `tests/test_prewarm.py` uses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import random
import resource
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from bench import accounting, machine, servers
from bench.plan import PROJECTS, REPO, RESULTS, ROWS_BY_KEY, SMS_WEBHOOK_FORM, Row

PROJECT = PROJECTS / "steady-py"
SERVICE = "bench-steady"
FUNCTION = "work"
ROWS = ("runc-python", "runsc-python", "process-python")  # the pool is the same code for Node
DEFAULT_ROWS = ("runc-python",)
FULL_S, QUICK_S = 60.0, 20.0
TARGET_RATIO = 0.01  # fewer than 1 % of invocations may wait for a new worker
READY_TIMEOUT_S = 300.0  # the first start on a machine builds the service image
REQUEST_TIMEOUT_S = 30.0  # longer than acquire_timeout_s (10 s) + a 100 ms handler
EXPECT = "<Message>Thanks +15551234567, we got: Hello from the bench</Message>"
BODY = urlencode(SMS_WEBHOOK_FORM)
POOL_SETTINGS = ("min_idle", "max_workers", "max_queue", "idle_timeout_s", "acquire_timeout_s", "log_level")

Key = tuple[str, frozenset[tuple[str, str]]]


@dataclass(frozen=True)
class Variant:
    """How long the handler waits before it answers."""

    name: str
    handler_ms: int

    @property
    def path(self) -> str:
        return f"/{FUNCTION}?ms={self.handler_ms}"


VARIANTS = (Variant("work 5 ms", 5), Variant("work 100 ms", 100))


@dataclass(frozen=True)
class Shape:
    """The load: Poisson arrivals at `rate_per_s`, plus a burst every `burst_every_s` seconds."""

    duration_s: float
    rate_per_s: float = 20.0
    burst_every_s: float = 5.0  # bursts at 5, 10, 15 s, ... (none at 0 s or at the very end)
    burst_min: int = 10
    burst_max: int = 20
    seed: int = 20


@dataclass(frozen=True)
class Arrival:
    at_s: float  # send time from the start of the load
    burst: int | None  # 1-based index of the burst it belongs to; None for the steady stream


def arrivals(shape: Shape) -> list[Arrival]:
    """The whole schedule, sorted by send time; the same for the same shape."""
    steady_rng, burst_rng = random.Random(shape.seed), random.Random(shape.seed + 1)
    out: list[Arrival] = []
    t = steady_rng.expovariate(shape.rate_per_s)
    while t < shape.duration_s:
        out.append(Arrival(round(t, 4), None))
        t += steady_rng.expovariate(shape.rate_per_s)
    index = 1
    while index * shape.burst_every_s < shape.duration_s - 1e-9:
        size = burst_rng.randint(shape.burst_min, shape.burst_max)
        out.extend(Arrival(index * shape.burst_every_s, index) for _ in range(size))
        index += 1
    out.sort(key=lambda a: a.at_s)
    return out


@dataclass
class Sample:
    """One request: when it was due, how long until its reply was read, and what came back."""

    at_s: float
    burst: int | None
    latency_ms: float  # from its scheduled send time to the last byte of the reply
    lag_ms: float  # how late the client actually sent it (the client's own scheduling delay)
    status: int  # 0: no reply (connection error, timeout)
    request_id: str
    error: str = ""  # empty when the reply was the expected 200 TwiML


@dataclass
class Load:
    started_wall: float  # time.time() at the start of the schedule
    duration_s: float  # from the start of the schedule to the last reply
    samples: list[Sample]

    @property
    def errors(self) -> list[Sample]:
        return [s for s in self.samples if s.error]


async def drive(base_url: str, path: str, shape: Shape, *, timeout_s: float = REQUEST_TIMEOUT_S) -> Load:
    """Send the schedule open-loop to `base_url` (127.0.0.1 only) and wait for every reply."""
    import aiohttp  # the engine's own dependency; imported here so `--help` stays light

    if urlsplit(base_url).hostname != "127.0.0.1":
        raise ValueError(f"the steady load only goes to 127.0.0.1, not {base_url!r}")
    schedule = arrivals(shape)
    url = base_url + path
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    loop = asyncio.get_running_loop()

    async def one(session: aiohttp.ClientSession, arrival: Arrival, due: float) -> Sample:
        lag_ms = (loop.time() - due) * 1000
        try:
            async with session.post(url, data=BODY, headers=headers) as response:
                text = await response.text()
                status, request_id = response.status, response.headers.get("X-Request-Id", "")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            return Sample(arrival.at_s, arrival.burst, (loop.time() - due) * 1000, lag_ms, 0, "",
                          f"{type(exc).__name__}: {exc}"[:200])
        latency_ms = (loop.time() - due) * 1000
        error = "" if status == 200 and EXPECT in text else f"{status}: {text.strip()[:160]!r}"
        return Sample(arrival.at_s, arrival.burst, latency_ms, lag_ms, status, request_id, error)

    connector = aiohttp.TCPConnector(limit=0)  # open loop: never hold a request back for a connection
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started_wall, start = time.time(), loop.time()
        tasks = []
        for arrival in schedule:
            due = start + arrival.at_s
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(session, arrival, due)))
        samples = list(await asyncio.gather(*tasks))
        duration_s = loop.time() - start
    return Load(started_wall, duration_s, samples)


# --- the engine's metrics ----------------------------------------------------------------------


def scrape(admin_url: str) -> dict[Key, float]:
    """Every sample of the engine's /metrics, keyed by (name, labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(admin_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def metric_total(samples: dict[Key, float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def engine_delta(before: dict[Key, float], after: dict[Key, float], service: str) -> dict[str, Any]:
    """What the engine counted for `service` between two scrapes."""

    def delta(name: str, **labels: str) -> int:
        labels["service"] = service
        return round(metric_total(after, name, **labels) - metric_total(before, name, **labels))

    statuses = sorted({dict(ls)["status"] for (n, ls) in after
                       if n == "functions_engine_invocations_total" and dict(ls).get("service") == service
                       and dict(ls).get("function") != "(none)"})
    by_status = {s: delta("functions_engine_invocations_total", function=FUNCTION, status=s) for s in statuses}
    by_status = {s: n for s, n in by_status.items() if n}
    exits = {r: delta("functions_engine_worker_exits_total", reason=r) for r in
             ("timeout", "dirty", "oom", "crash", "protocol", "idle_reaped", "shutdown")}
    return {
        "invocations": sum(by_status.values()),
        "by_status": by_status,
        "cold_starts": delta("functions_engine_cold_starts_total"),
        "worker_waits": delta("functions_engine_worker_wait_seconds_count"),
        "workers_started": delta("functions_engine_worker_bootstrap_seconds_count"),
        "worker_exits": {r: n for r, n in exits.items() if n},
        "queue_rejections": delta("functions_engine_queue_rejections_total"),
        "workers_after": {state: round(metric_total(after, "functions_engine_workers", service=service, state=state))
                          for state in ("idle", "busy", "starting")},
    }


def cold_ratio(delta: dict[str, Any]) -> float | None:
    return delta["cold_starts"] / delta["invocations"] if delta["invocations"] else None


# --- the engine's log: which requests were cold, when workers became ready -------------------------


def _offset_s(record: dict[str, Any], started_wall: float) -> float | None:
    try:
        return datetime.fromisoformat(record["timestamp"]).timestamp() - started_wall
    except (KeyError, ValueError):
        return None


def log_story(log_lines: list[str], load: Load) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The cold invocations (joined to the client's samples) and every worker that became ready."""
    by_id = {s.request_id: s for s in load.samples if s.request_id}
    cold, ready = [], []
    for line in log_lines:
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "invocation" and record.get("cold"):
            sample = by_id.get(record.get("invocation_id", ""))
            cold.append({
                "at_s": sample.at_s if sample else None, "burst": sample.burst if sample else None,
                "latency_ms": round(sample.latency_ms, 1) if sample else None,
                "engine_ms": record.get("duration_ms"), "worker_id": record.get("worker_id"),
            })
        elif record.get("event") == "worker_ready":
            at = _offset_s(record, load.started_wall)
            boot = record.get("bootstrap_ms")
            ready.append({"ready_at_s": round(at, 3) if at is not None else None, "bootstrap_ms": boot,
                          "started_at_s": round(at - boot / 1000, 3) if at is not None and boot else None,
                          "worker_id": record.get("worker_id")})
    return cold, ready


def where(cold: list[dict[str, Any]]) -> str:
    """`burst 1 (5 s) ×2, steady 0.4 s`: which requests waited for a new worker."""
    if not cold:
        return "—"
    parts: dict[str, int] = {}
    for c in cold:
        if c["burst"]:
            label = f"burst {c['burst']} ({c['at_s']:g} s)"
        elif c["at_s"] is not None:
            label = f"steady {c['at_s']:.1f} s"
        else:
            label = "unmatched"
        parts[label] = parts.get(label, 0) + 1
    return ", ".join(f"{k} ×{n}" if n > 1 else k for k, n in parts.items())


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(len(ordered) * q / 100) - 1))]


# --- one case: a row and a handler variant, on a fresh engine ---------------------------------------


@dataclass
class Case:
    row: str
    label: str
    variant: str
    handler_ms: int
    available: bool = True
    reason: str = ""
    sent: int = 0
    bursts: int = 0
    errors: int = 0
    error_detail: dict[str, int] = field(default_factory=dict)
    engine: dict[str, Any] = field(default_factory=dict)  # engine_delta()
    cold_ratio: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    p99_steady_ms: float | None = None  # requests of the steady stream only
    p99_burst_ms: float | None = None  # requests of the bursts only
    max_client_lag_ms: float | None = None
    cold_requests: list[dict[str, Any]] = field(default_factory=list)
    workers_ready: list[dict[str, Any]] = field(default_factory=list)  # relative to the load's start
    load_s: float = 0.0
    engine_cores: float | None = None  # engine + workers (+ docker daemons), CPUs during the load
    other_cores: float | None = None  # everything else on the machine during the load
    loadavg_before: str = ""
    engine_commit: str = ""  # when this case's engine started
    log: str = ""


def _start_engine(name: str, row: Row) -> servers.Server:
    """`python -m engine serve` on the steady project; no pool flags: the engine's defaults."""
    import os
    import sys

    port, admin = servers.free_port(), servers.free_port()
    command = [
        sys.executable, "-m", "engine", "serve", f"{SERVICE}={PROJECT}",
        "--host", "127.0.0.1", "--port", str(port), "--admin-port", str(admin),
        "--backend", row.backend or "process", "--log-format", "json",
    ]
    if row.runtime:
        command += ["--runtime", row.runtime]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}
    proc, log_path, err_path = servers._spawn(name, command, env, REPO)
    return servers.Server(name, proc, port, log_path, err_path, admin_port=admin, docker=row.docker)


def run_case(row: Row, variant: Variant, shape: Shape, progress=print) -> Case:
    case = Case(row.key, row.label, variant.name, variant.handler_ms,
                loadavg_before=" ".join(Path("/proc/loadavg").read_text().split()[:3]))
    case.engine_commit = engine_version()
    name = f"steady-{row.key}-{variant.handler_ms}ms"
    server = _start_engine(name, row)
    case.log = str(server.log_path.relative_to(REPO))
    try:
        server.wait_ready(READY_TIMEOUT_S)
        assert server.admin_port is not None
        admin = f"http://127.0.0.1:{server.admin_port}"
        meter = accounting.CpuMeter(server.pid, engine_containers=server.docker)
        before, cpu_before, self_before = scrape(admin), meter.sample(), _self_cpu_s()
        load = asyncio.run(drive(server.base_url, variant.path, shape))
        cpu = accounting.CpuMeter.delta(cpu_before, meter.sample())
        self_cpu = _self_cpu_s() - self_before
        time.sleep(0.5)  # the last invocations' `done` reports: the gauges settle
        after = scrape(admin)
    except (servers.StartFailed, OSError) as exc:
        case.available, case.reason = False, str(exc).removeprefix(f"{name}: ")
        return case
    finally:
        server.stop()  # SIGTERM (the engine removes its workers), then any container it left; the log is complete
    case.engine = engine_delta(before, after, SERVICE)
    case.cold_ratio = cold_ratio(case.engine)
    case.sent = len(load.samples)
    case.bursts = len({s.burst for s in load.samples if s.burst})
    case.load_s = round(load.duration_s, 2)
    case.errors = len(load.errors)
    for s in load.errors:
        key = s.error.split(":", 1)[0]
        case.error_detail[key] = case.error_detail.get(key, 0) + 1
    ok = [s.latency_ms for s in load.samples if not s.error]
    case.p50_ms, case.p99_ms = percentile(ok, 50), percentile(ok, 99)
    case.max_ms = max(ok) if ok else None
    case.p99_steady_ms = percentile([s.latency_ms for s in load.samples if not s.error and not s.burst], 99)
    case.p99_burst_ms = percentile([s.latency_ms for s in load.samples if not s.error and s.burst], 99)
    case.max_client_lag_ms = round(max(s.lag_ms for s in load.samples), 2) if load.samples else None
    case.cold_requests, case.workers_ready = log_story(server.log_path.read_text(errors="replace").splitlines(), load)
    ours = cpu.server_s + cpu.workers_s + cpu.daemons_s
    case.engine_cores = round(ours / load.duration_s, 2)
    case.other_cores = round(max(0.0, cpu.machine_s - ours - self_cpu) / load.duration_s, 2)
    progress(f"  {row.key} {variant.name}: {case.engine['invocations']} invocations, "
             f"{case.engine['cold_starts']} cold ({_pct(case.cold_ratio)}), p99 {_ms(case.p99_ms)} ms, "
             f"errors {case.errors}; cold: {where(case.cold_requests)}")
    return case


def _self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- the table ---------------------------------------------------------------------------------------

COLUMNS = ("row", "handler", "invocations", "cold starts", "cold-start ratio", "< 1 %", "p50 ms", "p99 ms",
           "p99 burst ms", "errors", "workers started", "cold requests", "other load")


def _pct(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio * 100:.2f} %"


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def table_rows(cases: list[Case]) -> list[list[str]]:
    lines = []
    for c in cases:
        if not c.available:
            lines.append([c.label, c.variant, f"n/a ({c.reason})"] + ["—"] * (len(COLUMNS) - 3))
            continue
        met = c.cold_ratio is not None and c.cold_ratio < TARGET_RATIO
        lines.append([
            c.label, c.variant, f"{c.engine['invocations']:,}", str(c.engine["cold_starts"]), _pct(c.cold_ratio),
            "met" if met else "**MISSED**", _ms(c.p50_ms), _ms(c.p99_ms), _ms(c.p99_burst_ms), str(c.errors),
            str(c.engine["workers_started"]), where(c.cold_requests), f"{c.other_cores:.2f}",
        ])
    return lines


def render(cases: list[Case], markdown: bool) -> str:
    rows = table_rows(cases)
    if markdown:
        out = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" if i < 2 or i in (5, 11) else "---:"
                                                             for i in range(len(COLUMNS))) + "|"]
        return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(COLUMNS[i]), *(len(r[i].replace("**", "")) for r in rows)) for i in range(len(COLUMNS))]
    out = ["  ".join(h.ljust(w) for h, w in zip(COLUMNS, widths))]
    out += ["  ".join(cell.replace("**", "").ljust(w) for cell, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


def notes(cases: list[Case]) -> list[str]:
    """Per case: when workers started and became ready, what the engine counted beside the table."""
    lines = []
    for c in cases:
        if not c.available:
            continue
        boots = ", ".join(f"{w['started_at_s']:.2f}→{w['ready_at_s']:.2f} s" for w in c.workers_ready
                          if w["started_at_s"] is not None and w["ready_at_s"] is not None and w["ready_at_s"] >= 0)
        cold = "; ".join(f"{'burst ' + str(r['burst']) if r['burst'] else 'steady'} at {r['at_s']:.2f} s: "
                         f"{r['latency_ms']} ms" for r in c.cold_requests if r["at_s"] is not None)
        lines.append(
            f"- {c.row}, {c.variant}: {c.sent} requests sent ({c.bursts} bursts) in {c.load_s} s; engine statuses "
            f"{c.engine['by_status']}, worker waits {c.engine['worker_waits']}, queue rejections "
            f"{c.engine['queue_rejections']}, worker exits {c.engine['worker_exits'] or 'none'}, pool after "
            f"{c.engine['workers_after']}; workers booted during the load (start→ready): {boots or 'none'}; "
            f"cold requests (latency): {cold or 'none'}; p99 steady {_ms(c.p99_steady_ms)} ms, max "
            f"{_ms(c.max_ms)} ms; client lag max {c.max_client_lag_ms} ms; engine+workers "
            f"{c.engine_cores} CPUs, other load {c.other_cores} CPUs, load average before {c.loadavg_before}; "
            f"engine {c.engine_commit}"
            + (f"; errors {c.error_detail}" if c.errors else "")
        )
    return lines


def engine_version() -> str:
    """The commit the engine ran from, and whether engine/ or runner-image/python/ had uncommitted changes
    (others edit them while benches run: a number belongs to the code that produced it)."""
    import subprocess

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short=7", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "engine", "runner-image/python")  # the steady rows are Python
    return f"{commit} (uncommitted changes in engine/ or runner-image/python/)" if dirty else commit


def defaults() -> dict[str, Any]:
    from engine.config import Settings

    return {k: Settings.model_fields[k].default for k in POOL_SETTINGS}


def run(rows: tuple[str, ...] | None, quick: bool, progress=print) -> int:
    rows = rows or DEFAULT_ROWS
    unsupported = [k for k in rows if k not in ROWS]
    if unsupported:
        raise SystemExit(f"error: --steady measures the Python engine rows {', '.join(ROWS)}; "
                         f"not {', '.join(unsupported)}")
    shape = Shape(duration_s=QUICK_S if quick else FULL_S)
    mode = "quick" if quick else "full"
    settings = defaults()
    schedule = arrivals(shape)
    bursts = sorted({a.burst for a in schedule if a.burst})
    sizes = [sum(1 for a in schedule if a.burst == b) for b in bursts]
    about = machine.describe()
    about["engine_commit"] = engine_version()
    started_at = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    progress(f"bench steady {mode}: rows {', '.join(rows)}; {shape.duration_s:g} s per handler variant, "
             f"Poisson {shape.rate_per_s:g} req/s + bursts {sizes} every {shape.burst_every_s:g} s "
             f"({len(schedule)} requests); engine defaults {settings}; load average {about['loadavg_at_start']}")
    begun = time.monotonic()
    cases = []
    for key in rows:
        row = ROWS_BY_KEY[key]
        for variant in VARIANTS:
            progress(f"{row.label}, {variant.name} ...")
            cases.append(run_case(row, variant, shape, progress))
    elapsed = time.monotonic() - begun
    header = (machine.header(about, f"steady {mode}", started_at, elapsed)
              + f" Load per case: {shape.duration_s:g} s, Poisson {shape.rate_per_s:g} req/s + bursts of {sizes} "
                f"at {', '.join(f'{b * shape.burst_every_s:g}' for b in bursts)} s ({len(schedule)} requests, "
                f"seed {shape.seed}); engine pool settings: the defaults {settings}; engine at commit "
                f"{about['engine_commit']} (at the start).")
    text, md = render(cases, markdown=False), render(cases, markdown=True)
    verdict = [f"Target: cold starts < {TARGET_RATIO:.0%} of invocations (engine metrics), zero errors."]
    print()
    print(header)
    print()
    print(text)
    print()
    print("\n".join(verdict + notes(cases)))
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "steady" if not quick else "steady-quick"
    json_path, md_path = RESULTS / f"{stem}.json", RESULTS / f"{stem}.md"
    payload = {"mode": mode, "started_at": started_at, "seconds": round(elapsed, 1), "machine": about,
               "shape": dataclasses.asdict(shape), "burst_sizes": sizes, "requests_per_case": len(schedule),
               "engine_settings": settings, "target_ratio": TARGET_RATIO,
               "cases": [dataclasses.asdict(c) for c in cases]}
    json_path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    md_path.write_text("\n".join([header, "", md, "", *verdict, "", *notes(cases), ""]))
    print(f"\nwritten: {json_path.relative_to(REPO)}, {md_path.relative_to(REPO)}")
    return 0
