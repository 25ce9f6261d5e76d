"""Where the engine's warm path spends its time: py-spy under load, summarised per stage.

For the process and docker/runc Python rows: an engine with the warm-row settings, the realistic
handler at c=32, and py-spy on the engine process (`--native`) and on one runner (`--idle
--nonblocking`: py-spy cannot tell idle threads apart inside a container, so every sample is kept
and idle is recognised by its leaf frame). Raw collapsed stacks are recorded first and summarised
here; flame graph SVGs of the same processes are recorded right after, under the same load.

Only the main thread is summarised (the engine's event loop; the runner's invoke loop): the other
threads (docker executor, child watchers, output capture readers) mostly wait. A busy sample is
attributed to a stage by its innermost frame that names one, so `json.dumps` called from
engine/protocol.py counts as serialisation and a socket `send` under aiohttp counts as front door;
only samples with no such frame fall back to the asyncio loop. The engine's stage times are its
CPU per request split by busy-sample share; the runner's are main-thread wall time per invocation.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import accounting, loadgen, measure, servers, tools
from bench.plan import REALISTIC, RESULTS, ROWS_BY_KEY, Plan

PROFILED_ROWS = ("process-python", "runc-python")
RATE_HZ = 100  # samples per second: --native sampling pauses the engine for each one
_REPO = RESULTS.parent.parent


def profile_dir(plan: Plan) -> Path:
    """results/profile for full runs; a quick run's shorter profile goes beside it, not over it."""
    return RESULTS / ("profile" if plan.mode == "full" else f"profile-{plan.mode}")


@dataclass(frozen=True)
class Attribution:
    """How to read one process's samples."""

    main_thread: str  # a main-thread stack matches this
    idle: str  # the leaf frame of a waiting main thread matches this
    idle_label: str
    stages: tuple[tuple[str, str], ...]  # (stage, frame pattern), innermost frame first
    fallback: tuple[tuple[str, str], ...] = ()  # tried only when no stage frame matched


ENGINE = Attribution(
    main_thread=r"\(engine/__main__\.py",
    idle=r"^(epoll_wait \(|EpollSelector\.select \()",
    idle_label="event loop idle (epoll_wait)",
    stages=(
        ("logging (structlog)", r"\(structlog/"),
        ("metrics (prometheus_client)", r"\(prometheus_client/"),
        ("event building (body parse, event, context)", r"\(engine/event\.py|^_read_body \(engine/|\(urllib/parse\.py"),
        ("serialisation (invoke frame, result decode, reply)", r"\(engine/(protocol|reply)\.py|\(pydantic|\(json/"),
        ("pool, worker and invoke bookkeeping", r"\(engine/(pool|worker|invoke)\.py"),
        ("routing and front middleware", r"\(engine/(routing|http_front|signature|service)\.py"),
        ("worker channel (docker: the worker's Unix socket; process: pipes)",
         r"\(engine/backends/(docker|docker_channel|docker_stream|process)\.py"
         r"|\(asyncio/(streams|subprocess|unix_events|base_subprocess)\.py"),
        ("front door (aiohttp: parse, request, response, write)", r"\((aiohttp|multidict|yarl)/"),
    ),
    fallback=(("asyncio loop (scheduling, timers, callbacks)", r"\(asyncio/|\(selectors\.py|_asynciomodule"),),
)
RUNNER = Attribution(
    main_thread=r"^<module> \(runner\.py",
    idle=r"^main \(functions_runtime/main\.py",
    idle_label="waiting for the next invoke (stdin)",
    stages=(
        ("handler and TwiML (user code, twilio)", r"\((twilio|xml)/|\((functions/)?(trivial|realistic)\.py"),
        ("leftover checks (threads, /proc scans)", r"\(functions_runtime/cleanliness\.py"),
        ("output capture sync (waits for the pipe reader threads)", r"\(functions_runtime/(capture|streams|logsink)\.py"),
        ("reply building (callback → result)", r"\(functions_runtime/(reply|response|invocation|jsvalues)\.py"),
        ("framing and channel (JSON, writes)", r"\(functions_runtime/(framing|channel)\.py|\(json/"),
        ("event loop policy reset", r"\(functions_runtime/aio\.py|\(asyncio/"),
        ("invoke dispatch, context", r"\(functions_runtime/(main|service|context|plumbing)\.py"),
    ),
)
_OTHER = "other"
_METRIC = re.compile(r"^functions_engine_invocations_total\{[^}]*\} ([0-9.e+]+)$", re.M)


@dataclass
class Stage:
    stage: str
    share: float  # of the main thread's busy samples
    us_per_request: float


@dataclass
class ProcessProfile:
    main_thread_samples: int
    idle_share: float  # of the main thread's samples
    us_per_request: float  # engine: CPU per request; runner: busy main-thread wall time per invocation
    stages: list[Stage]
    raw: str
    svg: str
    py_spy_mode: str


def summarise(raw_text: str, how: Attribution) -> tuple[int, int, dict[str, int]]:
    """(main-thread samples, idle samples, busy samples per stage) of a py-spy raw recording."""
    main_thread, idle = re.compile(how.main_thread), re.compile(how.idle)
    tiers = [[(name, re.compile(pattern)) for name, pattern in tier] for tier in (how.stages, how.fallback)]
    total = idle_count = 0
    busy: dict[str, int] = {}
    for line in raw_text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or not main_thread.search(stack):
            continue
        frames = stack.split(";")
        total += int(count)
        if idle.search(frames[-1]):
            idle_count += int(count)
            continue
        stage = next((s for tier in tiers if (s := _innermost(frames, tier))), _OTHER)
        busy[stage] = busy.get(stage, 0) + int(count)
    return total, idle_count, busy


def _innermost(frames: list[str], rules: list[tuple[str, re.Pattern[str]]]) -> str | None:
    for frame in reversed(frames):
        for name, pattern in rules:
            if pattern.search(frame):
                return name
    return None


def _stages(busy: dict[str, int], us_per_request: float) -> list[Stage]:
    total = sum(busy.values()) or 1
    ordered = sorted(busy.items(), key=lambda item: -item[1])
    return [Stage(name, round(n / total, 4), round(us_per_request * n / total, 1)) for name, n in ordered]


def _invocations(server: servers.Server) -> float:
    assert server.admin_port is not None
    _, body = servers.get_status(server.admin_port, "/metrics")
    return sum(float(v) for v in _METRIC.findall(body))


def _runner_pids(server: servers.Server) -> list[int]:
    """The runner processes: python3 under each container's init (docker), the engine's children (process)."""
    if server.docker:
        roots = [c.pid for c in accounting.inspect_containers(accounting.engine_container_ids(server.pid))]
        return [pid for root in roots for pid in accounting.process_tree(root) if pid != root]
    return [pid for pid in accounting.process_tree(server.pid) if pid != server.pid]


def _counters(server: servers.Server, runners: list[int]) -> tuple[float, float, float]:
    """(engine CPU s, runners' CPU s, invocations answered) now."""
    return accounting.process_cpu_s(server.pid, children=False), _runner_cpu_s(server, runners), _invocations(server)


def _runner_cpu_s(server: servers.Server, runners: list[int]) -> float:
    if server.docker:
        return sum(accounting.container_cpu_s(cid) or 0.0 for cid in accounting.engine_container_ids(server.pid))
    return sum(accounting.process_cpu_s(pid, children=False) for pid in runners)


def _record(py_spy: str, targets: list[tuple[int, Path, tuple[str, ...]]], seconds: int, fmt: str) -> None:
    """py-spy on every (pid, output, mode) at once, for `seconds`; raises if one fails."""
    procs = [
        subprocess.Popen(
            [py_spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", str(RATE_HZ),
             "--format", fmt, "-o", str(out), *mode],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for pid, out, mode in targets
    ]
    for proc, (pid, out, _) in zip(procs, targets):
        text, _ = proc.communicate(timeout=seconds + 120)
        if proc.returncode != 0:
            raise RuntimeError(f"py-spy on pid {pid} ({out.name}) failed: {text.strip()[-300:]}")


def profile_row(key: str, plan: Plan, stack: contextlib.ExitStack, py_spy: str, progress=print) -> dict[str, object]:
    row = ROWS_BY_KEY[key]
    server = measure.start_server(row, plan, f"{key}-profile")
    stack.callback(server.stop)
    directory = profile_dir(plan)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        server.wait_ready(measure.READY_TIMEOUT_S)
        measure.check_handlers(server)
        loadgen.run(server.base_url, REALISTIC, plan.connections, plan.warmup_s, plan.wrk_timeout_s)
        runners = _runner_pids(server)
        load_s = 2 * plan.profile_s + 4
        wrk = subprocess.Popen(
            [loadgen.wrk_path(), "-t1", f"-c{plan.connections}", f"-d{load_s}s", "-s", str(loadgen.SCRIPT),
             server.base_url + REALISTIC.path, "--", REALISTIC.method, REALISTIC.body],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            time.sleep(1.0)
            paths = {name: directory / f"{key}-{name}" for name in ("engine", "runner")}
            engine_mode, runner_mode = ("--native",), ("--idle", "--nonblocking")

            def targets(suffix: str) -> list[tuple[int, Path, tuple[str, ...]]]:
                return [(server.pid, paths["engine"].with_suffix(suffix), engine_mode),
                        (runners[0], paths["runner"].with_suffix(suffix), runner_mode)]

            t0, cpu0 = time.monotonic(), _counters(server, runners)
            _record(py_spy, targets(".txt"), plan.profile_s, "raw")
            t1, cpu1 = time.monotonic(), _counters(server, runners)
            _record(py_spy, targets(".svg"), plan.profile_s, "flamegraph")
        finally:
            wrk.communicate(timeout=load_s + 60)
    finally:
        server.stop()
    requests = max(1.0, cpu1[2] - cpu0[2])
    window_s = t1 - t0
    result: dict[str, object] = {"row": key, "handler": REALISTIC.name, "rate_hz": RATE_HZ,
                                 "rps_while_profiling": round(requests / window_s, 1)}
    engine_cpu_us = (cpu1[0] - cpu0[0]) / requests * 1e6
    runner_wall_us = window_s * len(runners) / requests * 1e6  # one runner's share of the requests
    for name, how, mode, per_request in (("engine", ENGINE, engine_mode, engine_cpu_us),
                                         ("runner", RUNNER, runner_mode, runner_wall_us)):
        raw_path = paths[name].with_suffix(".txt")
        total, idle, busy = summarise(raw_path.read_text(), how)
        idle_share = idle / total if total else 0.0
        if name == "runner":
            per_request *= 1 - idle_share  # busy wall time per invocation
        result[name] = asdict(ProcessProfile(
            total, round(idle_share, 4), round(per_request, 1), _stages(busy, per_request),
            str(raw_path.relative_to(_REPO)), str(paths[name].with_suffix(".svg").relative_to(_REPO)), " ".join(mode),
        ))
    result["runner_cpu_us_per_request"] = round((cpu1[1] - cpu0[1]) / requests * 1e6, 1)
    progress(f"  {key} profiled at {requests / window_s:,.0f} req/s: engine {engine_cpu_us:.0f} µs CPU/request "
             f"(loop idle {result['engine']['idle_share'] * 100:.0f}%), runner {result['runner']['us_per_request']:.0f} µs "
             f"busy per invocation")
    return result


def run(plan: Plan, stack: contextlib.ExitStack, progress=print) -> dict[str, object]:
    py_spy = tools.py_spy()
    progress("profiling the warm path with py-spy ...")
    profiles = {}
    for key in PROFILED_ROWS:
        try:
            profiles[key] = profile_row(key, plan, stack, py_spy, progress)
        except (servers.StartFailed, measure.RowUnavailable, RuntimeError, OSError) as exc:
            profiles[key] = {"row": key, "error": str(exc)}
            progress(f"  {key}: profile failed ({exc})")
    (profile_dir(plan) / "summary.md").write_text(render(profiles))
    return profiles


def render(profiles: dict[str, dict[str, object]]) -> str:
    out = ["# Warm-path profile (py-spy, realistic handler, c=32)", ""]
    for key, data in profiles.items():
        if "error" in data:
            out += [f"## {key}", "", f"failed: {data['error']}", ""]
            continue
        out += [f"## {key}: {data['rps_while_profiling']} req/s while profiled "
                f"(runner CPU {data['runner_cpu_us_per_request']} µs/request)", ""]
        for name, unit in (("engine", "µs CPU/request"), ("runner", "µs busy wall time/invocation")):
            prof = data[name]
            assert isinstance(prof, dict)
            out += [f"{name} main thread (py-spy {prof['py_spy_mode']}, {prof['main_thread_samples']} samples, "
                    f"{prof['idle_share'] * 100:.0f}% {(ENGINE if name == 'engine' else RUNNER).idle_label}; "
                    f"{prof['us_per_request']} {unit}; flame graph `{prof['svg']}`):", "",
                    f"| stage | share of busy samples | {unit} |", "|---|---:|---:|"]
            out += [f"| {s['stage']} | {s['share'] * 100:.1f}% | {s['us_per_request']:.0f} |" for s in prof["stages"]]
            out.append("")
    return "\n".join(out)
