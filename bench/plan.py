"""What one bench run measures: the rows, the two handlers, the durations, the targets.

Everything that decides the shape of a run lives here as plain data, so the numbers in
`bench/results/` can be read next to the plan that made them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlencode

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PROJECTS = BENCH_DIR / "projects"
RESULTS = BENCH_DIR / "results"
LOGS = RESULTS / "logs"  # server logs of the last run (git-ignored)
NODE_DIR = BENCH_DIR / ".node"  # twilio-run, installed by npm on first use (git-ignored)

TWILIO_RUN_VERSION = "5.0.1"
PY_SPY_VERSION = "0.4.3"

Kind = Literal["engine", "twilio-run", "aiohttp"]


# --- the two handlers --------------------------------------------------------------------------

# The form a Twilio inbound-SMS webhook posts (field names and shapes as the hosted service sends).
SMS_WEBHOOK_FORM = {
    "ToCountry": "US", "ToState": "CA", "SmsMessageSid": "SM" + "0" * 32, "NumMedia": "0",
    "ToCity": "SAN FRANCISCO", "FromZip": "94105", "SmsSid": "SM" + "0" * 32, "FromState": "CA",
    "SmsStatus": "received", "FromCity": "SAN FRANCISCO", "Body": "Hello from the bench",
    "FromCountry": "US", "To": "+15557654321", "ToZip": "94105", "NumSegments": "1",
    "MessageSid": "SM" + "0" * 32, "AccountSid": "AC" + "0" * 32, "From": "+15551234567",
    "ApiVersion": "2010-04-01",
}


@dataclass(frozen=True)
class Handler:
    """One function, the request that exercises it, and what a correct reply contains."""

    name: str  # also the URL path and the file name in bench/projects/{py,js}/functions
    method: str
    body: str  # form-encoded; empty for GET
    expect_status: int
    expect_in_body: str

    @property
    def path(self) -> str:
        return "/" + self.name


TRIVIAL = Handler("trivial", "GET", "", 200, "This is fine")
REALISTIC = Handler(
    "realistic", "POST", urlencode(SMS_WEBHOOK_FORM), 200,
    "<Message>Thanks +15551234567, we got: Hello from the bench</Message>",
)
HANDLERS = (TRIVIAL, REALISTIC)


# --- the rows ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One server set-up under test."""

    key: str
    label: str
    kind: Kind
    language: Literal["python", "node"]
    backend: Literal["docker", "process"] | None = None  # engine rows
    runtime: Literal["runc", "runsc"] | None = None  # engine rows on docker
    twilio_run_args: tuple[str, ...] = ()  # twilio-run rows

    @property
    def project(self) -> Path:
        return PROJECTS / ("py" if self.language == "python" else "js")

    @property
    def service(self) -> str:
        return "bench-py" if self.language == "python" else "bench-js"

    @property
    def docker(self) -> bool:
        return self.backend == "docker"


ROWS = (
    Row("runc-python", "engine docker/runc, Python", "engine", "python", "docker", "runc"),
    Row("runc-node", "engine docker/runc, Node", "engine", "node", "docker", "runc"),
    Row("runsc-python", "engine docker/runsc, Python", "engine", "python", "docker", "runsc"),
    Row("runsc-node", "engine docker/runsc, Node", "engine", "node", "docker", "runsc"),
    Row("process-python", "engine process, Python", "engine", "python", "process"),
    Row("twilio-run", "twilio-run (default: fork per request)", "twilio-run", "node"),
    Row("twilio-run-nofork", "twilio-run --fork-process=false", "twilio-run", "node",
        twilio_run_args=("--fork-process=false",)),
    Row("aiohttp", "bare aiohttp (front-door ceiling)", "aiohttp", "python"),
)
ROWS_BY_KEY = {row.key: row for row in ROWS}
BASELINE = "twilio-run-nofork"  # the ratio column divides by this row's req/s
CEILING = "aiohttp"


# --- durations and engine settings -------------------------------------------------------------


@dataclass(frozen=True)
class EngineSettings:
    """The engine's settings for the warm rows (chosen with `python -m bench --sweep`)."""

    # 4 warm workers: on 2 cores every row is CPU-bound (engine + runners + docker relay + wrk), so
    # more workers only queue the same CPU; the sweep measured 2-8 workers on docker/runc within
    # its noise, with CPU per request rising at 8 (bench/README.md, "Engine settings").
    workers: int = 4
    # `warning` keeps the one-line-per-invocation log off the hot path: `info` cost 2-11% more CPU
    # per request in the sweep.
    log_level: str = "warning"


@dataclass(frozen=True)
class Plan:
    """Durations of one run; `--quick` shortens every phase, the measurements stay the same."""

    mode: Literal["quick", "full"]
    warmup_s: int  # c=32 load before the measured cells, discarded (JIT, caches, pool growth)
    c1_s: int  # latency cell, one connection
    c32_s: int  # throughput cell, 32 connections
    cold_runs: int  # cold starts per engine row (and bare `docker run`s)
    profile_s: int  # py-spy recording under load, with --profile
    # Before each row, wait up to this long for other work on the machine to drop under
    # QUIET_CORES (test suites of other checkouts share the CPUs); then measure anyway.
    quiet_wait_s: int = 0
    # After a load cell, requests wrk gave up on may still be running (twilio-run's forks): the
    # next cell starts once the server's processes are quiet, or after this long.
    settle_max_s: float = 15.0
    # Warm up before each handler (full), or only before the first one (quick: the server is warm).
    warmup_every_handler: bool = True
    connections: int = 32
    wrk_timeout_s: int = 10  # a reply slower than this is a wrk timeout error
    engine: EngineSettings = field(default_factory=EngineSettings)
    rows: tuple[str, ...] = tuple(row.key for row in ROWS)

    def to_json(self) -> dict[str, object]:
        return asdict(self)


QUICK = Plan("quick", warmup_s=1, c1_s=1, c32_s=2, cold_runs=3, profile_s=5, settle_max_s=1.0,
             warmup_every_handler=False)
FULL = Plan("full", warmup_s=2, c1_s=10, c32_s=10, cold_runs=15, profile_s=15, quiet_wait_s=120)
QUIET_CORES = 0.25


# --- targets -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A goal printed beside the results: met, missed, or n/a when a row did not run."""

    text: str
    kind: Literal["rps_ratio", "p50_margin", "cold_ratio", "zero_errors"]
    rows: tuple[str, ...] = ()
    against: str | None = None  # row key for rps_ratio
    factor: float = 1.0  # rps ≥ factor × against; cold p50 ≤ factor × docker run
    margin_ms: float = 0.0  # p50 ≤ against p50 + margin


TARGETS = (
    Target("runc rows: req/s at c=32 ≥ 1.0× twilio-run --fork-process=false", "rps_ratio",
           ("runc-python", "runc-node"), BASELINE, 1.0),
    Target("runc rows: req/s at c=32 ≥ 0.25× bare aiohttp", "rps_ratio", ("runc-python", "runc-node"), CEILING, 0.25),
    Target("runsc rows: req/s at c=32 ≥ 0.75× twilio-run --fork-process=false", "rps_ratio",
           ("runsc-python", "runsc-node"), BASELINE, 0.75),
    Target("runc rows: warm p50 at c=1 ≤ bare aiohttp p50 + 0.5 ms", "p50_margin",
           ("runc-python", "runc-node"), CEILING, margin_ms=0.5),
    Target("docker rows: cold start p50 ≤ 1.2× bare `docker run`", "cold_ratio",
           ("runc-python", "runc-node", "runsc-python", "runsc-node"), factor=1.2),
    Target("zero errors in every row", "zero_errors"),
)
