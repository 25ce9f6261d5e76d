"""Observability: every `functions_engine_*` family on the admin port's `/metrics` (docs/metrics.md).

One engine per backend serves a run of mixed traffic whose outcome the test knows: successes,
handler errors (500), timeouts (504, a 0.5 s per-function limit), a dirty worker, a full queue
(503), unknown paths (404), oversized headers (431) and, on docker, an out-of-memory kill (502).
The scrape, parsed with prometheus_client's own parser, must match what was sent exactly; where
the engine alone knows a number (cold starts, worker boots, log bytes), it must match the
engine's own JSON log lines for the same events.
"""

from __future__ import annotations

import ast
import collections
import json
import shutil
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine import __version__
from engine.metrics import EXIT_REASONS

REPO = Path(__file__).resolve().parent.parent
OPS = Path(__file__).resolve().parent / "projects" / "ops"
FUNCTIONS = {"ok", "fail", "sleep", "slow", "hog", "leak", "chatty"}
SLOW_LIMIT_S = 0.5
MAX_LOG_BYTES = 2000
BURST = 6
CONFIG = {
    "min_idle": 0,  # the first invocation has to wait for a new worker: a certain cold start
    "max_workers": 2,
    "max_queue": 1,  # with no worker yet, one request waits and the rest of a burst is turned away
    "max_log_bytes": MAX_LOG_BYTES,
    "memory_mb": 64,
    "services": {"ops": {"functions": {"/slow": {"time_limit_s": SLOW_LIMIT_S}}}},
}

Key = tuple[str, frozenset[tuple[str, str]]]


# --- helpers ---------------------------------------------------------------------------------


def scrape(engine) -> dict[Key, float]:
    """Every sample of /metrics, parsed by prometheus_client, keyed by (name, labels)."""
    response = httpx.get(engine.admin_url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[Key, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def families(engine) -> dict[str, str]:
    """Family name → type, as parsed."""
    text = httpx.get(engine.admin_url + "/metrics", timeout=10).text
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def value(samples: dict[Key, float], name: str, **labels: str) -> float:
    """The sum of every sample called `name` whose labels include `labels` (0 if none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def label_values(samples: dict[Key, float], name: str, label: str) -> set[str]:
    return {dict(ls)[label] for (n, ls), _ in samples.items() if n == name and label in dict(ls)}


def log_records(engine) -> list[dict]:
    return [json.loads(line) for line in engine.logs().splitlines() if line.startswith("{")]


def settle(engine, timeout: float = 15) -> dict[Key, float]:
    """Scrape until no worker is busy or starting and two scrapes 0.3 s apart agree."""
    deadline = time.monotonic() + timeout
    previous: dict[Key, float] | None = None
    while True:
        current = scrape(engine)
        idle_only = value(current, "functions_engine_workers", state="busy") == 0 == value(
            current, "functions_engine_workers", state="starting")
        if idle_only and current == previous:
            return current
        if time.monotonic() > deadline:
            raise AssertionError("metrics did not settle: workers still busy or counters still moving")
        previous = current
        time.sleep(0.3)


def _require_docker(backend, request):
    if backend != "process":
        request.getfixturevalue("docker_available")


# --- the traffic -----------------------------------------------------------------------------


@dataclass
class Traffic:
    """What the clients saw: statuses by function (`(none)` for paths that are no function)."""

    statuses: collections.Counter[tuple[str, int]] = field(default_factory=collections.Counter)
    chatty_stdout_bytes: int = 0

    def record(self, function: str, response: httpx.Response) -> httpx.Response:
        self.statuses[(function, response.status_code)] += 1
        return response

    def count(self, function: str | None = None, status: int | None = None) -> int:
        return sum(n for (f, s), n in self.statuses.items()
                   if (function is None or f == function) and (status is None or s == status))


@pytest.fixture(scope="module")
def run(module_engine_factory, backend, request, tmp_path_factory):
    """An engine (on a fresh copy of the project, so its service image is built) and its traffic."""
    _require_docker(backend, request)
    project = tmp_path_factory.mktemp("metrics") / "ops"
    shutil.copytree(OPS, project)
    (project / "assets").mkdir()
    (project / "assets" / "build.txt").write_text(uuid.uuid4().hex)  # new content hash: one service build
    engine = module_engine_factory(project, backend=backend, config=CONFIG)
    traffic = Traffic()
    url = engine.url

    # A burst while no worker exists: one request waits for the first worker, the rest find the
    # queue (max_queue=1) full and are answered 503 at once.
    def sleeper(_: int) -> httpx.Response:
        return httpx.get(url + "/sleep", params={"s": "0.5"}, timeout=30)

    with ThreadPoolExecutor(BURST) as pool:
        for response in pool.map(sleeper, range(BURST)):
            traffic.record("sleep", response)
    assert traffic.count("sleep", 503) >= 1, traffic.statuses

    with engine.client() as client:
        for _ in range(3):
            assert traffic.record("ok", client.get("/ok")).status_code == 200
        for _ in range(2):
            assert traffic.record("fail", client.get("/fail")).status_code == 500
        for _ in range(2):
            started = time.monotonic()
            assert traffic.record("slow", client.get("/slow", params={"s": "5"})).status_code == 504
            assert time.monotonic() - started < 4
        assert traffic.record("leak", client.get("/leak")).status_code == 200
        for i in range(2):
            tag = f"t{i}"
            assert traffic.record("chatty", client.get("/chatty", params={"lines": "60", "tag": tag})).status_code == 200
            traffic.chatty_stdout_bytes += sum(len(f"out {n} {tag} " + "x" * 40) for n in range(60))
        for path in ("/nope", "/random/" + uuid.uuid4().hex, "/.env"):
            assert traffic.record("(none)", client.get(path)).status_code == 404
        headers = [(f"x-h{i}", "v") for i in range(100)]  # over max_headers=90
        assert traffic.record("(none)", client.get("/ok", headers=headers)).status_code == 431
        if backend != "process":
            response = client.get("/hog", params={"mib": "512"})
            assert traffic.record("hog", response).status_code == 502, response.text
            assert "memory" in response.text
    samples = settle(engine)
    images = _service_images(engine) if backend != "process" else []
    yield engine, traffic, samples
    engine.stop()  # its containers go first; then this run's one-off service image (best effort)
    for image in images:
        subprocess.run(["docker", "image", "rm", image], capture_output=True, timeout=60)


def _service_images(engine) -> list[str]:
    engine_id = next(r["engine_id"] for r in log_records(engine) if r.get("event") == "isolation")
    out = subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label=io.functions-engine.engine={engine_id}", "--format", "{{.Image}}"],
        capture_output=True, text=True, timeout=30,
    ).stdout
    return sorted(set(out.split()))


# --- invocations -----------------------------------------------------------------------------


def test_invocations_total_counts_each_status_exactly(run):
    engine, traffic, samples = run
    for (function, status), n in traffic.statuses.items():
        got = value(samples, "functions_engine_invocations_total", service="ops", function=function,
                    status=str(status))
        assert got == n, f"{function} {status}: metrics say {got}, clients saw {n}"
    assert value(samples, "functions_engine_invocations_total") == sum(traffic.statuses.values())
    named = {(ls, v) for (n, ls), v in samples.items() if n == "functions_engine_invocations_total"}
    for labels, _ in named:
        runtime = dict(labels)["runtime"]
        assert runtime == ("(none)" if dict(labels)["function"] == "(none)" else "python")


def test_label_values_come_from_the_project_not_from_paths(run):
    engine, traffic, samples = run
    for name in ("functions_engine_invocations_total", "functions_engine_invocation_duration_seconds_count"):
        assert label_values(samples, name, "function") <= FUNCTIONS | {"(none)"}
        assert label_values(samples, name, "service") == {"ops"}
    assert label_values(samples, "functions_engine_invocations_total", "function") >= {"(none)"}
    assert "random" not in json.dumps(sorted(str(k) for k in samples))


def test_duration_histogram_counts_every_function_request(run):
    engine, traffic, samples = run
    name = "functions_engine_invocation_duration_seconds"
    for function in FUNCTIONS:
        n = traffic.count(function)
        assert value(samples, name + "_count", function=function) == n, function
        if n:
            assert value(samples, name + "_bucket", function=function, le="+Inf") == n
    assert value(samples, name + "_count", function="(none)") == 0  # only function routes are timed
    buckets = sorted(float(dict(ls)["le"]) for (n, ls), _ in samples.items()
                     if n == name + "_bucket" and dict(ls)["function"] == "ok")
    assert buckets[0] == 0.001 and buckets[-2] == 30 and buckets[-1] == float("inf")
    # The 504s took at least their 0.5 s limit; the handler errors answered well under it.
    assert value(samples, name + "_bucket", function="slow", le="0.25") == 0
    assert value(samples, name + "_bucket", function="slow", le="5.0") == 2
    assert value(samples, name + "_sum", function="slow") >= 2 * SLOW_LIMIT_S
    assert value(samples, name + "_bucket", function="fail", le="0.25") == 2


# --- workers ---------------------------------------------------------------------------------


def test_worker_wait_counts_invocations_that_got_a_worker(run):
    engine, traffic, samples = run
    got_worker = traffic.count() - traffic.count("(none)") - traffic.count(status=503)
    assert value(samples, "functions_engine_worker_wait_seconds_count", service="ops", runtime="python") == got_worker


def test_cold_starts_match_the_invocation_log(run):
    engine, traffic, samples = run
    cold = value(samples, "functions_engine_cold_starts_total", service="ops", runtime="python")
    logged = [r for r in log_records(engine) if r.get("event") == "invocation" and r.get("cold") is True]
    assert cold >= 1  # min_idle=0: the burst's first request waited for the first worker
    assert cold == len(logged)
    assert cold <= value(samples, "functions_engine_worker_wait_seconds_count")


def test_worker_exits_by_reason(run):
    engine, traffic, samples = run
    name = "functions_engine_worker_exits_total"
    assert label_values(samples, name, "reason") == set(EXIT_REASONS)  # every reason exists from the start
    expected = dict.fromkeys(EXIT_REASONS, 0)
    expected["timeout"] = traffic.count("slow", 504)
    expected["dirty"] = traffic.count("leak")
    expected["oom"] = traffic.count("hog", 502)
    for reason, n in expected.items():
        assert value(samples, name, service="ops", runtime="python", reason=reason) == n, reason
    exits = collections.Counter(r["reason"] for r in log_records(engine) if r.get("event") == "worker_exit")
    assert {k: v for k, v in exits.items() if v} == {k: v for k, v in expected.items() if v}


def test_workers_gauge_by_state(run):
    engine, traffic, samples = run
    states = {s: value(samples, "functions_engine_workers", service="ops", runtime="python", state=s)
              for s in ("idle", "busy", "starting", "removing")}
    assert states["busy"] == states["starting"] == states["removing"] == 0
    # Once settled, every worker that became ready and has not exited is idle.
    logged = collections.Counter(r["event"] for r in log_records(engine))
    assert states["idle"] == logged["worker_ready"] - logged["worker_exit"]
    assert 0 <= states["idle"] <= CONFIG["max_workers"]
    assert label_values(samples, "functions_engine_workers", "state") == {"idle", "busy", "starting", "removing"}


def test_bootstrap_histogram_counts_every_worker_ready(run):
    engine, traffic, samples = run
    ready = [r for r in log_records(engine) if r.get("event") == "worker_ready"]
    assert value(samples, "functions_engine_worker_bootstrap_seconds_count", service="ops") == len(ready) >= 2
    assert value(samples, "functions_engine_worker_bootstrap_seconds_sum", service="ops") > 0


def test_queue_rejections_and_depth(run):
    engine, traffic, samples = run
    rejected = traffic.count("sleep", 503)
    assert value(samples, "functions_engine_queue_rejections_total", service="ops", runtime="python") == rejected
    assert value(samples, "functions_engine_invocations_total", function="sleep", status="503") == rejected
    assert value(samples, "functions_engine_queue_depth", service="ops", runtime="python") == 0


# --- logs, images, info ----------------------------------------------------------------------


def test_handler_log_bytes_kept_and_dropped(run):
    engine, traffic, samples = run
    logged = sum(len(r["message"].encode()) for r in log_records(engine)
                 if r.get("event") == "handler_log" and r.get("invocation_id") and r.get("service") == "ops")
    kept = value(samples, "functions_engine_handler_log_bytes_total", service="ops", outcome="kept")
    dropped = value(samples, "functions_engine_handler_log_bytes_total", service="ops", outcome="dropped")
    assert kept == logged > 0
    # Each chatty call printed more than the cap: everything over it (at least) was dropped.
    assert dropped >= traffic.chatty_stdout_bytes - 2 * MAX_LOG_BYTES > 0


def test_image_builds(run, backend):
    engine, traffic, samples = run
    kinds = families(engine)
    assert kinds["functions_engine_image_builds"] == "counter"
    assert kinds["functions_engine_image_build_duration_seconds"] == "histogram"
    builds = "functions_engine_image_builds_total"
    if backend == "process":
        assert value(samples, builds) == 0
        return
    # The project copy has new content, so exactly one service image was built for it.
    assert value(samples, builds, kind="service", outcome="built") == 1
    for kind in label_values(samples, builds, "kind"):
        built = value(samples, builds, kind=kind, outcome="built")
        assert value(samples, "functions_engine_image_build_duration_seconds_count", kind=kind) == built


def test_engine_info_names_version_backend_and_runtime(run, backend):
    engine, traffic, samples = run
    assert families(engine)["functions_engine_info"] == "gauge"  # an Info, in the text format
    runtime = "none" if backend == "process" else "runsc" if backend == "docker-runsc" else "runc"
    want = {"version": __version__, "backend": "process" if backend == "process" else "docker", "runtime": runtime}
    assert samples[("functions_engine_info", frozenset(want.items()))] == 1
    assert not any(name == "functions_engine_engine_info" for name, _ in samples), "the old name is gone"


def test_no_created_series_doubles_a_tenants_series(run):
    """Counters and histograms export no `_created` timestamps: each function's series count once."""
    engine, traffic, samples = run
    text = httpx.get(engine.admin_url + "/metrics", timeout=10).text
    assert "_created" not in text
    assert not [name for name, _ in samples if name.endswith("_created")]
    # The traffic made per-function counters and histograms, so the check above had something to see.
    assert value(samples, "functions_engine_invocations_total", function="ok") > 0


def test_every_family_is_prefixed_and_documented(run):
    engine, traffic, samples = run
    doc = (REPO / "docs" / "metrics.md").read_text()
    for name, kind in families(engine).items():
        assert name.startswith("functions_engine_")
        exposed = name + ("_total" if kind == "counter" else "")
        assert f"### `{exposed}`" in doc, f"{exposed} is not documented in docs/metrics.md"


# --- the bounded set of exit reasons, in the code itself ----------------------------------------


def test_code_records_only_the_documented_exit_reasons():
    """Every literal reason passed to Worker.kill / Pool.release / Pool.discard is in EXIT_REASONS."""
    found: set[str] = set()
    for path in (REPO / "engine").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            position = {"kill": 0, "discard": 1, "release": 2}.get(node.func.attr)
            if position is None:
                continue
            candidates = [kw.value for kw in node.keywords if kw.arg == "reason"] + node.args[position:position + 1]
            for arg in candidates:
                for sub in ast.walk(arg):
                    if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                        found.add(sub.value)
        for node in ast.walk(ast.parse(path.read_text())):  # `self.death = "..."` in the reader
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Attribute) and t.attr == "death" for t in node.targets
            ):
                for sub in ast.walk(node.value):
                    if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                        found.add(sub.value)
    assert found, "no exit reasons found: the test no longer matches the code"
    assert found <= set(EXIT_REASONS), found - set(EXIT_REASONS)
    doc = (REPO / "docs" / "metrics.md").read_text()
    for reason in EXIT_REASONS:
        assert f"| `{reason}` |" in doc, f"exit reason {reason} is not in docs/metrics.md's table"
