"""Observability: the engine's own log (docs/operating.md "Logs").

structlog JSON on stdout by default: one `invocation` line per request routed to a function (its
id is the `X-Request-Id` the client got back, an incoming well-formed one honoured), handler
output as `handler_log` lines of their own tagged with that id and a level, and a line per worker
lifecycle event (`worker_ready`, `worker_exit` with its reason, `worker_start_failed`). Every line
that starts with `{` is one JSON object; `--log-format console` gives human lines instead.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import pytest

OPS = Path(__file__).resolve().parent / "projects" / "ops"
SLOW_LIMIT_S = 0.5
CONFIG = {"min_idle": 1, "max_workers": 2, "services": {"ops": {"functions": {"/slow": {"time_limit_s": SLOW_LIMIT_S}}}}}
# The plain start-up report (cli.py); every other line is JSON.
START_UP_LINE = re.compile(r"^(Serving with backend |  http://|  \(private\) |Admin: http://)")
HEX_ID = re.compile(r"^[0-9a-f]{32}$")


def _require_docker(backend, request):
    if backend != "process":
        request.getfixturevalue("docker_available")


@pytest.fixture(scope="module")
def engine(module_engine_factory, backend, request):
    _require_docker(backend, request)
    return module_engine_factory(OPS, backend=backend, config=CONFIG)


def records(engine) -> list[dict]:
    """Every JSON line of the engine's stdout; a line starting with `{` that does not parse fails the test."""
    out = []
    for line in engine.logs().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def wait_for(engine, predicate, what: str, timeout: float = 10) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in records(engine) if predicate(r)]
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no log line {what}; last lines:\n{engine.logs()[-3000:]}")


def invocation_line(engine, invocation_id: str) -> dict:
    [line] = wait_for(engine, lambda r: r.get("event") == "invocation" and r.get("invocation_id") == invocation_id,
                      f"invocation {invocation_id}")
    return line


# --- JSON by default ---------------------------------------------------------------------------


def test_every_line_is_json_except_the_start_up_report(engine):
    with engine.client() as client:
        client.get("/ok")
        client.get("/chatty", params={"tag": "parse"})
        client.get("/no-such-function")
    lines = [line for line in engine.logs().splitlines() if line.strip()]
    for line in lines:
        if line.startswith("{"):
            record = json.loads(line)
            assert isinstance(record, dict)
            assert {"event", "level", "timestamp"} <= record.keys(), record
            assert datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).utcoffset().total_seconds() == 0
        else:
            assert START_UP_LINE.match(line), f"a log line that is neither JSON nor the start-up report: {line!r}"
    start = [r for r in records(engine) if r["event"] == "isolation"]
    assert start and start[0]["backend"] == ("process" if engine.backend == "process" else "docker")


def test_one_invocation_line_with_every_field(engine):
    body = b'{"hello": "world"}'
    with engine.client() as client:
        response = client.post("/ok", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    invocation_id = response.headers["X-Request-Id"]
    assert HEX_ID.match(invocation_id)
    line = invocation_line(engine, invocation_id)
    assert line["level"] == "info"
    assert (line["service"], line["function"], line["runtime"], line["method"]) == ("ops", "ok", "python", "POST")
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], (int, float)) and line["duration_ms"] >= 0
    assert isinstance(line["worker_id"], str) and line["worker_id"]
    assert isinstance(line["cold"], bool)
    assert line["bytes_in"] == len(body)
    assert line["bytes_out"] == len(response.content)


def test_a_well_formed_incoming_request_id_is_honoured(engine):
    mine = f"trace-{uuid.uuid4().hex}:1.2"
    with engine.client() as client:
        response = client.get("/ok", headers={"X-Request-Id": mine})
    assert response.headers["X-Request-Id"] == mine
    assert invocation_line(engine, mine)["status"] == 200


@pytest.mark.parametrize("bad", ["has spaces", "x" * 129, "semi;colon", "new\tline"])
def test_a_malformed_request_id_is_replaced(engine, bad):
    with engine.client() as client:
        response = client.get("/ok", headers={"X-Request-Id": bad})
    issued = response.headers["X-Request-Id"]
    assert issued != bad and HEX_ID.match(issued)
    assert invocation_line(engine, issued)["status"] == 200


def test_request_id_is_on_every_response_even_404(engine):
    mine = f"probe-{uuid.uuid4().hex}"
    with engine.client() as client:
        response = client.get("/not/a/function", headers={"X-Request-Id": mine})
    assert response.status_code == 404
    assert response.headers["X-Request-Id"] == mine


def test_handler_output_is_its_own_lines_tagged_with_id_and_level(engine):
    tag = uuid.uuid4().hex[:8]
    with engine.client() as client:
        response = client.get("/chatty", params={"tag": tag, "lines": "3"})
    invocation_id = response.headers["X-Request-Id"]
    invocation_line(engine, invocation_id)
    wanted = {f"out 0 {tag}", f"out 1 {tag}", f"out 2 {tag}", f"err {tag}", f"warn {tag}"}

    def mine(r: dict) -> bool:
        return r.get("event") == "handler_log" and r.get("invocation_id") == invocation_id

    deadline = time.monotonic() + 5
    while True:
        lines = [r for r in records(engine) if mine(r)]
        seen = {w for w in wanted for r in lines if w in r["message"]}
        if seen == wanted or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert seen == wanted, [r["message"] for r in lines]
    for record in lines:
        assert (record["service"], record["function"]) == ("ops", "chatty")
        assert record["stream_level"] in {"debug", "info", "warn", "error"}
        assert "\n" not in record["message"]
    by_text = {w: r for w in wanted for r in lines if w in r["message"]}
    assert by_text[f"out 0 {tag}"]["stream_level"] == "info"
    assert by_text[f"err {tag}"]["stream_level"] in {"warn", "error"}
    assert by_text[f"warn {tag}"]["stream_level"] in {"warn", "error"}


def test_worker_lifecycle_lines(engine):
    ready = wait_for(engine, lambda r: r.get("event") == "worker_ready", "worker_ready")
    assert ready[0]["pool"] == "ops/python"
    assert isinstance(ready[0]["worker_id"], str) and ready[0]["bootstrap_ms"] > 0
    with engine.client() as client:
        response = client.get("/slow", params={"s": "5"})
    assert response.status_code == 504
    line = invocation_line(engine, response.headers["X-Request-Id"])
    assert line["status"] == 504 and line["worker_id"], line  # the killed worker is named even after a 504
    [exit_line] = wait_for(
        engine, lambda r: r.get("event") == "worker_exit" and r.get("worker_id") == line["worker_id"],
        f"worker_exit for {line['worker_id']}",
    )
    assert exit_line["reason"] == "timeout"
    assert exit_line["pool"] == "ops/python"
    assert exit_line["invocations"] >= 1


def test_worker_start_failed_is_logged_and_retried(engine_factory, backend, request):
    """A worker that cannot answer `init` in time is a `worker_start_failed` line per attempt, not a crash loop."""
    _require_docker(backend, request)
    broken = engine_factory(OPS, backend=backend, config={"bootstrap_timeout_s": 0.001}, wait_ready=False)
    failures = wait_for(broken, lambda r: r.get("event") == "worker_start_failed" and r.get("attempt", 0) >= 2,
                        "worker_start_failed attempt 2", timeout=60)
    assert failures[0]["pool"] == "ops/python"
    assert "bootstrap_timeout_s" in failures[0]["error"]
    exits = [r for r in records(broken) if r.get("event") == "worker_exit"]
    assert exits and {r["reason"] for r in exits} == {"timeout"}
    # A pool that cannot start workers is its service's problem, not the engine's readiness.
    readyz = httpx.get(broken.admin_url + "/readyz", timeout=5)
    assert readyz.status_code == 200 and "pools failing" in readyz.text and "ops/python" in readyz.text, readyz.text


# --- console ---------------------------------------------------------------------------------


def test_console_format_is_human_lines(engine_factory):
    running = engine_factory(OPS, backend="process", args=["--log-format", "console"])
    with running.client() as client:
        response = client.get("/ok")
    invocation_id = response.headers["X-Request-Id"]
    deadline = time.monotonic() + 5
    while invocation_id not in running.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    text = running.logs()
    [line] = [line for line in text.splitlines() if invocation_id in line]
    assert "invocation" in line and "status=200" in line and "function=ok" in line
    assert "[info" in line
    assert not any(line.startswith("{") for line in text.splitlines())
    assert "\x1b[" not in text  # no colour codes when stdout is not a terminal
