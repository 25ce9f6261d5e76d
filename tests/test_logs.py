"""Conformance: the "Logs" section of behavior.md.

Handler output (print, stderr, the logging module, raw writes to fds 1 and 2) reaches the engine's
log as `handler_log` lines tagged with the invocation id, service, function and a level; it is
capped per invocation (the rest counted and dropped) and can never corrupt the worker channel.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import pytest

PROJECTS = Path(__file__).resolve().parent / "projects"
LOGS = PROJECTS / "logs"
CAP = 4096


def _require_docker(backend, request):
    if backend != "process":
        request.getfixturevalue("docker_available")


@pytest.fixture(scope="module")
def engine(module_engine_factory, backend, request):
    _require_docker(backend, request)
    return module_engine_factory(LOGS, backend=backend, config={"max_log_bytes": CAP})


@pytest.fixture(scope="module")
def default_engine(module_engine_factory, backend, request):
    _require_docker(backend, request)
    return module_engine_factory(LOGS, backend=backend)


# --- helpers ---------------------------------------------------------------------------------


def log_records(engine) -> list[dict]:
    records = []
    for line in engine.logs().splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                pass
    return records


def handler_logs(engine, invocation_id: str) -> list[dict]:
    return [r for r in log_records(engine) if r.get("event") == "handler_log" and r.get("invocation_id") == invocation_id]


def invoke(engine, mode: str, **params: str) -> tuple[httpx.Response, str]:
    tag = uuid.uuid4().hex[:10]
    with engine.client() as client:
        response = client.get("/log", params={"mode": mode, "tag": tag, **params})
    return response, tag


def wait_for_message(engine, invocation_id: str, message: str, timeout: float = 5) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in handler_logs(engine, invocation_id):
            if record.get("message") == message:
                return record
        time.sleep(0.05)
    got = [r.get("message") for r in handler_logs(engine, invocation_id)]
    raise AssertionError(f"no handler_log {message!r} for {invocation_id}; got {got!r}")


def settle(engine, invocation_id: str, timeout: float = 5) -> list[dict]:
    """All records of an invocation once its log stops growing (output after the reply lands late)."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        records = [r for r in log_records(engine) if r.get("invocation_id") == invocation_id]
        if len(records) == last and any(r.get("event") == "invocation" for r in records):
            return records
        last = len(records)
        time.sleep(0.3)
    return [r for r in log_records(engine) if r.get("invocation_id") == invocation_id]


def logged_bytes(records: list[dict]) -> int:
    return sum(len(str(r.get("message", "")).encode()) for r in records if r.get("event") == "handler_log")


def dropped_bytes_metric(engine) -> float:
    """Sum of the engine's dropped-handler-output byte counters for the `logs` service."""
    text = httpx.get(engine.admin_url + "/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or "log_bytes" not in line or "dropped" not in line or 'service="logs"' not in line:
            continue
        if "_created" in line.split("{")[0]:
            continue
        total += float(line.rsplit(" ", 1)[1])
    return total


# --- levels and tags -------------------------------------------------------------------------


def test_print_is_an_info_line_tagged_with_invocation_service_and_function(engine):
    response, tag = invoke(engine, "print")
    assert response.text == "logged print"
    invocation_id = response.headers["x-request-id"]
    record = wait_for_message(engine, invocation_id, f"stdout line {tag}")
    assert record["stream_level"] == "info"
    assert record["service"] == "logs"
    # The interface leaves open whether `function` is the name or the URL path.
    assert record["function"] in ("log", "/log")


def test_stderr_is_an_error_line(engine):
    """Python reading of `console.error → error`: what goes to stderr is an error."""
    response, tag = invoke(engine, "stderr")
    record = wait_for_message(engine, response.headers["x-request-id"], f"stderr line {tag}")
    assert record["stream_level"] == "error"


def test_logging_module_levels_map_to_info_warn_error(engine):
    response, tag = invoke(engine, "logging")
    invocation_id = response.headers["x-request-id"]
    expected = {
        f"info via logging {tag}": "info",
        f"warning via logging {tag}": "warn",
        f"error via logging {tag}": "error",
        f"critical via logging {tag}": "error",
    }
    for message, level in expected.items():
        assert wait_for_message(engine, invocation_id, message)["stream_level"] == level, message


def test_logging_debug_records_are_kept_as_debug_lines(engine):
    """A logger the handler set to DEBUG emits debug records; "each line is kept", at the default
    engine log level too (handler output is not engine chatter to be filtered by `log_level`)."""
    response, tag = invoke(engine, "logging")
    record = wait_for_message(engine, response.headers["x-request-id"], f"debug via logging {tag}")
    assert record["stream_level"] == "debug"


def test_root_logger_works_without_configuration(engine):
    response, tag = invoke(engine, "root-logging")
    invocation_id = response.headers["x-request-id"]
    assert wait_for_message(engine, invocation_id, f"warning via root logger {tag}")["stream_level"] == "warn"
    assert wait_for_message(engine, invocation_id, f"error via root logger {tag}")["stream_level"] == "error"


def test_output_without_a_trailing_newline_is_still_logged(engine):
    response, tag = invoke(engine, "write-no-newline")
    wait_for_message(engine, response.headers["x-request-id"], f"partial line {tag}")


def test_raw_writes_to_fd_1_and_2_are_captured_as_info_and_error(engine):
    response, tag = invoke(engine, "raw-fd")
    invocation_id = response.headers["x-request-id"]
    assert wait_for_message(engine, invocation_id, f"raw fd1 {tag}")["stream_level"] == "info"
    assert wait_for_message(engine, invocation_id, f"raw fd2 {tag}")["stream_level"] == "error"


def test_writes_to_sys_dunder_stdout_are_captured(engine):
    response, tag = invoke(engine, "dunder-stdout")
    assert response.text == "logged dunder-stdout"
    assert wait_for_message(engine, response.headers["x-request-id"], f"dunder stdout {tag}")["stream_level"] == "info"


def test_output_after_the_callback_keeps_the_invocation_id(engine):
    response, tag = invoke(engine, "after-callback")
    assert response.text == "logged"
    invocation_id = response.headers["x-request-id"]
    wait_for_message(engine, invocation_id, f"before callback {tag}")
    wait_for_message(engine, invocation_id, f"after callback {tag}")


def test_one_invocation_line_per_request_with_status_and_duration(engine):
    response, _ = invoke(engine, "print")
    invocation_id = response.headers["x-request-id"]
    records = [r for r in settle(engine, invocation_id) if r.get("event") == "invocation"]
    assert len(records) == 1, records
    record = records[0]
    assert record["service"] == "logs"
    assert record["function"] in ("log", "/log")
    assert record["status"] == 200
    assert isinstance(record["duration_ms"], (int, float)) and record["duration_ms"] >= 0


# --- the cap ---------------------------------------------------------------------------------


def test_output_is_capped_per_invocation_and_the_rest_counted(engine):
    dropped_before = dropped_bytes_metric(engine)
    response, tag = invoke(engine, "many-lines", lines="100")  # ~10 kB against a 4 KiB cap
    assert response.text == "logged many-lines"
    invocation_id = response.headers["x-request-id"]
    wait_for_message(engine, invocation_id, f"line 00000 {tag} " + "x" * 80)
    records = settle(engine, invocation_id)
    kept = logged_bytes(records)
    assert 0 < kept <= CAP, kept
    assert f"line 00099 {tag} " + "x" * 80 not in [r.get("message") for r in records]
    # "the rest counted": on the invocation's log line, or in the engine's metrics.
    in_log = [v for r in records for k, v in r.items() if "dropped" in k and isinstance(v, int)]
    counted = max(in_log, default=0) or dropped_bytes_metric(engine) - dropped_before
    assert counted >= 10_000 - CAP - 200, f"dropped output not counted ({counted} bytes)"


def test_the_cap_is_per_invocation_not_per_worker(engine):
    for _ in range(3):
        response, tag = invoke(engine, "many-lines", lines="100")
        wait_for_message(engine, response.headers["x-request-id"], f"line 00000 {tag} " + "x" * 80)


def test_default_cap_is_64_kib(default_engine):
    response, tag = invoke(default_engine, "many-lines", lines="2000")  # ~200 kB
    invocation_id = response.headers["x-request-id"]
    wait_for_message(default_engine, invocation_id, f"line 00000 {tag} " + "x" * 80)
    kept = logged_bytes(settle(default_engine, invocation_id))
    assert 60 * 1024 < kept <= 64 * 1024, kept


def test_printing_10_mb_neither_corrupts_the_channel_nor_the_reply(engine):
    start = time.monotonic()
    response, _ = invoke(engine, "huge")
    assert response.status_code == 200
    assert response.text == "logged huge"
    assert time.monotonic() - start < 10
    invocation_id = response.headers["x-request-id"]
    assert logged_bytes(settle(engine, invocation_id)) <= CAP
    for _ in range(3):
        follow_up, tag = invoke(engine, "print")
        assert follow_up.text == "logged print"
        wait_for_message(engine, follow_up.headers["x-request-id"], f"stdout line {tag}")


def test_forged_protocol_frames_in_handler_output_are_just_log_text(engine):
    response, _ = invoke(engine, "forge")
    assert response.status_code == 200
    assert response.text == "logged forge"
    assert "x-forged" not in response.headers
    for _ in range(3):
        follow_up, _ = invoke(engine, "print")
        assert (follow_up.status_code, follow_up.text) == (200, "logged print")
        assert "x-forged" not in follow_up.headers
