"""Configuration files (docs/operating.md "Configuration").

Everything the command line sets can come from a TOML or YAML file given with `--config`,
validated by the same pydantic model; flags win over the file. Per-function overrides hold the
time limit; pool and memory settings are per service (pools are per service and language). An
invalid file stops `python -m engine serve` with exit status 2 and a message naming the key.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import REPO, RunningEngine, free_port, wait_until_ready, write_toml

OPS = Path(__file__).resolve().parent / "projects" / "ops"
MiB = 1024 * 1024


def _require_docker(backend, request):
    if backend != "process":
        request.getfixturevalue("docker_available")


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("ENGINE_")}


@pytest.fixture
def serve(tmp_path):
    """`python -m engine serve --config FILE [ARGS]`: nothing else on the command line."""
    started: list[RunningEngine] = []

    def start(config_file: Path, port: int, admin_port: int, *args: str, backend: str = "process") -> RunningEngine:
        log_path = tmp_path / f"engine-{len(started)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "engine", "serve", "--config", str(config_file), *args],
                stdout=log, stderr=subprocess.STDOUT, env=_env(), cwd=REPO,
            )
        running = RunningEngine(url=f"http://127.0.0.1:{port}", admin_url=f"http://127.0.0.1:{admin_port}",
                                port=port, proc=proc, log_path=log_path, backend=backend)
        started.append(running)
        wait_until_ready(running, 300)
        return running

    yield start
    for running in started:
        running.stop()


def _backend_settings(backend: str) -> dict[str, Any]:
    return {"backend": "process"} if backend == "process" else {"backend": "docker", "runtime": "runc"}


def _timed_get(engine: RunningEngine, path: str, **params: str) -> tuple[int, float]:
    started = time.monotonic()
    response = httpx.get(engine.url + path, params=params, timeout=30)
    return response.status_code, time.monotonic() - started


def _metric(engine: RunningEngine, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(engine.admin_url + "/metrics", timeout=5).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and labels.items() <= s.labels.items())


def _containers(engine: RunningEngine) -> list[dict]:
    records = [json.loads(line) for line in engine.logs().splitlines() if line.startswith("{")]
    engine_id = next(r["engine_id"] for r in records if r.get("event") == "isolation")
    ids = subprocess.run(["docker", "ps", "-q", "--filter", f"label=io.functions-engine.engine={engine_id}"],
                         capture_output=True, text=True, check=True, timeout=30).stdout.split()
    return json.loads(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=True,
                                     timeout=30).stdout)


# --- files drive the engine --------------------------------------------------------------------


def test_yaml_file_drives_the_engine(serve, tmp_path, backend, request):
    """Projects, listeners, backend, a per-function time limit and per-service memory, all from YAML."""
    _require_docker(backend, request)
    port, admin_port = free_port(), free_port()
    config = {
        "projects": [f"ops={OPS}"], "host": "127.0.0.1", "port": port, "admin_port": admin_port,
        **_backend_settings(backend), "min_idle": 1, "time_limit_s": 10,
        "services": {"ops": {"memory_mb": 96, "functions": {"/slow": {"time_limit_s": 0.5}}}},
    }
    path = tmp_path / "engine.yaml"
    path.write_text(yaml.safe_dump(config))
    engine = serve(path, port, admin_port, backend=backend)

    status, took = _timed_get(engine, "/slow", s="5")
    assert status == 504 and 0.5 <= took < 3, (status, took)  # the file's 0.5 s, not the default 10 s
    status, took = _timed_get(engine, "/sleep", s="1")
    assert status == 200 and took >= 1  # other functions keep the engine-wide limit
    if backend != "process":
        memories = {c["HostConfig"]["Memory"] for c in _containers(engine)}
        assert memories == {96 * MiB}


def test_toml_file_drives_the_engine_with_per_service_pools(serve, tmp_path):
    """Two services from one file: each pool takes its own service's min_idle and max_workers."""
    port, admin_port = free_port(), free_port()
    path = tmp_path / "engine.toml"
    write_toml(path, {
        "projects": [f"alpha={OPS}", f"beta={OPS}"], "port": port, "admin_port": admin_port, "backend": "process",
        "min_idle": 1, "max_workers": 4, "max_queue": 0, "log_format": "json",
        "services": {"beta": {"min_idle": 2, "max_workers": 2,
                              "functions": {"/slow": {"time_limit_s": 0.5}}}},
    })
    engine = serve(path, port, admin_port)
    idle = "functions_engine_workers"
    assert _metric(engine, idle, service="alpha", state="idle") == 1
    assert _metric(engine, idle, service="beta", state="idle") == 2
    # Only beta's /slow has the short limit (services are picked by Host: <service>.localhost).
    status, took = _timed_get_host(engine, "beta.localhost", "/slow", s="5")
    assert status == 504 and took < 3
    # beta has at most 2 workers and no queue: a third concurrent request is turned away at once.
    deadline = time.monotonic() + 30
    while _metric(engine, idle, service="beta", state="idle") < 2:  # the timed-out worker's replacement
        assert time.monotonic() < deadline
        time.sleep(0.05)

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        statuses = sorted(pool.map(lambda _: _timed_get_host(engine, "beta.localhost", "/sleep", s="1")[0], range(3)))
    assert statuses == [200, 200, 503]
    # A Host that names no served service is a 404 under the bounded service label.
    assert _timed_get_host(engine, f"scan-{time.time_ns()}.example", "/ok")[0] == 404
    assert _metric(engine, "functions_engine_invocations_total", service="(none)", function="(none)", status="404") == 1


def _timed_get_host(engine: RunningEngine, host: str, path: str, **params: str) -> tuple[int, float]:
    started = time.monotonic()
    response = httpx.get(engine.url + path, params=params, headers={"Host": host}, timeout=30)
    return response.status_code, time.monotonic() - started


def test_flags_win_over_the_file(serve, tmp_path):
    file_port, flag_port, admin_port = free_port(), free_port(), free_port()
    path = tmp_path / "engine.toml"
    write_toml(path, {"projects": [str(OPS)], "port": file_port, "admin_port": admin_port, "time_limit_s": 0.5})
    engine = serve(path, flag_port, admin_port, "--port", str(flag_port), "--time-limit", "5")
    assert httpx.get(engine.url + "/ok", timeout=10).status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{file_port}/ok", timeout=5)
    status, took = _timed_get(engine, "/sleep", s="1")
    assert status == 200  # the flag's 5 s, not the file's 0.5 s


# --- invalid files -----------------------------------------------------------------------------


INVALID = [
    ("bad-number.toml", "max_workers = 0\n", ["max_workers", "greater than or equal to 1", "got 0"]),
    ("unknown-key.toml", "max_wrkers = 3\n", ["max_wrkers", "Extra inputs are not permitted"]),
    ("bad-choice.yaml", "backend: vm\n", ["backend", "'process' or 'docker'", "got 'vm'"]),
    ("bad-type.yaml", "services:\n  shop:\n    functions:\n      /slow:\n        time_limit_s: soon\n",
     ["services.shop.functions./slow.time_limit_s", "valid number", "got 'soon'"]),
    ("per-function-memory.toml", '[services.shop.functions."/slow"]\nmemory_mb = 512\n',
     ["services.shop.functions./slow.memory_mb", "Extra inputs are not permitted"]),
    ("per-service-bad.yaml", "services:\n  shop:\n    min_idle: -1\n",
     ["services.shop.min_idle", "greater than or equal to 0", "got -1"]),
    ("bad-service-name.toml", '[services."Shop_1"]\nmin_idle = 1\n', ["services", "Shop_1"]),
    ("syntax.toml", "port = = 3\n", ["syntax.toml", "not valid TOML"]),
    ("syntax.yaml", "port: [3000\n", ["syntax.yaml", "not valid YAML"]),
    ("list.yaml", "- port\n", ["list.yaml", "mapping"]),
]


@pytest.mark.parametrize("name,text,expected", INVALID, ids=[case[0] for case in INVALID])
def test_invalid_file_exits_2_naming_the_key(tmp_path, name, text, expected):
    path = tmp_path / name
    path.write_text(text)
    result = subprocess.run([sys.executable, "-m", "engine", "serve", str(OPS), "--config", str(path)],
                            capture_output=True, text=True, timeout=60, env=_env(), cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ")
    for fragment in expected:
        assert fragment in result.stderr, f"{fragment!r} not in:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # refused before anything started


def test_missing_file_exits_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "engine", "serve", str(OPS), "--config", str(tmp_path / "nope.toml")],
                            capture_output=True, text=True, timeout=60, env=_env(), cwd=tmp_path)
    assert result.returncode == 2
    assert "cannot read config file" in result.stderr and "nope.toml" in result.stderr
