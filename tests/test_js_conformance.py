"""Conformance for JavaScript handlers: every contract row of behavior.md, on the Node runner.

The same rows as the Python conformance modules (test_callback, test_response, test_event,
test_context, test_logs, test_leftovers), written as JS handlers in tests/projects/js-*/ and run
through the real engine over HTTP: the callback table (Buffers byte for byte, TwiML objects, Error
objects, throws, rejections, uncaught errors before the callback), `Twilio.Response`, event and
context, the globals, the time limit, load errors, console levels, package.json dependencies (and
devDependencies left out), leftover work after the callback, and the build errors of package.json.

Run with `--backends docker` (containers, Node.js 22 from the runner image) and `--backends process`
(the host's `node`).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

PROJECTS = Path(__file__).resolve().parent / "projects"
JS = PROJECTS / "js-conformance"
JS_CONTEXT_ENV = PROJECTS / "js-context-env"
JS_LEFTOVERS = PROJECTS / "js-leftovers"
MiB = 1024 * 1024
SHORT_LIMIT_S = 1.0
XML = '<?xml version="1.0" encoding="UTF-8"?>'

SERVICE_SID = "ZS0123456789abcdef0123456789abcdef"
ENVIRONMENT_SID = "ZEfedcba9876543210fedcba9876543210"

CONFIG = {
    "min_idle": 1,
    "max_workers": 4,
    "services": {
        "js-conformance": {
            "service_sid": SERVICE_SID,
            "environment_sid": ENVIRONMENT_SID,
            "functions": {
                "/slow": {"time_limit_s": SHORT_LIMIT_S},
                # Rows that must answer at once fail fast instead of waiting 10 s.
                "/respond": {"time_limit_s": 5},
                "/async-respond": {"time_limit_s": 5},
                "/response": {"time_limit_s": 5},
            },
        }
    },
}


def _require_docker(backend, request):
    if backend != "process":
        request.getfixturevalue("docker_available")


@pytest.fixture(scope="module")
def engine(module_engine_factory, backend, request):
    _require_docker(backend, request)
    return module_engine_factory(JS, backend=backend, config=CONFIG)


@pytest.fixture(scope="module")
def dev_engine(module_engine_factory, backend, request):
    _require_docker(backend, request)
    return module_engine_factory(JS, backend=backend, config={"dev_mode": True})


@pytest.fixture(scope="module")
def env_engine(module_engine_factory, backend, request):
    _require_docker(backend, request)
    return module_engine_factory(JS_CONTEXT_ENV, backend=backend)


@pytest.fixture(scope="module")
def leftovers_engine(module_engine_factory, backend, request):
    """One worker only, so consecutive requests land on the same worker unless it was replaced."""
    _require_docker(backend, request)
    return module_engine_factory(JS_LEFTOVERS, backend=backend, config={"min_idle": 1, "max_workers": 1})


# --- helpers ---------------------------------------------------------------------------------


def call(engine, path: str, **params: str) -> httpx.Response:
    with engine.client(follow_redirects=False) as client:
        return client.get(path, params=params)


def respond(engine, mode: str, **params: str) -> httpx.Response:
    return call(engine, "/respond", mode=mode, **params)


def build(engine, mode: str) -> httpx.Response:
    return call(engine, "/response", mode=mode)


def raw_get(engine, target: str, headers: list[tuple[str, str]] | None = None):
    """Status, the header lines exactly as sent (list of pairs) and the body."""
    conn = http.client.HTTPConnection("127.0.0.1", engine.port, timeout=30)
    try:
        conn.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", f"127.0.0.1:{engine.port}")
        for name, value in headers or []:
            conn.putheader(name, value)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


def content_type(response: httpx.Response) -> str | None:
    return response.headers.get("content-type")


def media_type(response: httpx.Response) -> str:
    return (content_type(response) or "").split(";")[0].strip().lower()


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


def records_for(engine, invocation_id: str) -> list[dict]:
    return [r for r in log_records(engine) if r.get("invocation_id") == invocation_id]


def wait_for(predicate, timeout: float = 5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def wait_warm(engine, timeout: float = 60) -> None:
    """Let the pools refill (a killed worker is replaced) so a timing starts on a warm worker."""
    wait_for(lambda: httpx.get(engine.admin_url + "/readyz", timeout=2).status_code == 200, timeout, "warm pools")


def worker_of(engine, invocation_id: str) -> str:
    """The `WORKER host:pid` line /slow prints before it stalls."""

    def find():
        for record in records_for(engine, invocation_id):
            message = str(record.get("message", ""))
            if message.startswith("WORKER "):
                return message.removeprefix("WORKER ")
        return None

    return wait_for(find, what=f"the WORKER line of {invocation_id}")


def assert_worker_gone(engine, backend: str, identity: str) -> None:
    """A killed worker never serves again; on the process backend its pid disappears too."""
    host, pid = identity.rsplit(":", 1)
    if backend == "process" and host == socket.gethostname():
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 5, f"worker pid {pid} to be gone")
    seen = {respond(engine, "whoami").text for _ in range(8)}
    assert identity not in seen


def wait_for_warning(engine, invocation_id: str, needle: str, timeout: float = 5) -> None:
    def found():
        for record in records_for(engine, invocation_id):
            level = str(record.get("level", record.get("stream_level", ""))).lower()
            if "warn" in level and needle in json.dumps(record).lower():
                return True
        return False

    wait_for(found, timeout, f"a warning about {needle!r} for {invocation_id}")


def params_of(event: dict) -> dict:
    return {key: value for key, value in event.items() if key != "request"}


# === callback(error, response) ===============================================================


@pytest.mark.parametrize("mode", ["none", "null", "null-null", "undefined-undefined"])
def test_callback_without_response_is_200_empty_with_no_content_type(engine, mode):
    """`callback()` / `callback(null)` / `callback(null, null)` / `callback(undefined, undefined)`."""
    response = respond(engine, mode)
    assert response.status_code == 200
    assert content_type(response) is None
    assert response.content == b""


@pytest.mark.parametrize("mode, body", [("text", "This is fine"), ("unicode", "héllo ✓ 🎉"), ("empty-string", "")])
def test_callback_with_a_string_is_200_text_plain_utf8(engine, mode, body):
    response = respond(engine, mode)
    assert response.status_code == 200
    assert content_type(response) == "text/plain; charset=utf-8"
    assert response.content == body.encode("utf-8")


@pytest.mark.parametrize(
    "mode, value",
    [
        ("object", {"a": 1, "b": [1, 2], "c": None, "d": "ü"}),
        ("array", [1, "two", None, {"x": True}]),
        ("true", True),
        ("false", False),
        ("number", 42),
        ("float", 1.5),
        ("zero", 0),
    ],
)
def test_callback_with_an_object_array_boolean_or_number_is_200_json(engine, mode, value):
    response = respond(engine, mode)
    assert response.status_code == 200
    assert content_type(response) == "application/json; charset=utf-8"
    assert json.loads(response.content) == value


@pytest.mark.parametrize(
    "kind, xml",
    [
        ("messaging", "<Response><Message>Hello, World!</Message></Response>"),
        ("voice", '<Response><Say voice="alice">Ahoy</Say><Play>https://demo.twilio.com/docs/classic.mp3</Play></Response>'),
        ("fax", '<Response><Receive action="/fax/received"/></Response>'),
    ],
)
def test_callback_with_twiml_is_200_text_xml_of_its_string_form(engine, kind, xml):
    response = respond(engine, f"twiml-{kind}")
    assert response.status_code == 200
    assert content_type(response) == "text/xml; charset=utf-8"
    assert response.text == XML + xml


@pytest.mark.parametrize(
    "mode, body",
    [("buffer", bytes(i % 256 for i in range(1024))), ("uint8array", b"\x00\xff\r\n\x1b" * 2)],
)
def test_callback_with_a_buffer_is_200_octet_stream_byte_for_byte(engine, mode, body):
    response = respond(engine, mode)
    assert response.status_code == 200
    assert content_type(response) == "application/octet-stream"
    assert response.content == body


@pytest.mark.parametrize("mode", ["falsy-error-empty-string", "falsy-error-zero", "falsy-error-false"])
def test_a_falsy_error_argument_is_not_an_error(engine, mode):
    response = respond(engine, mode)
    assert (response.status_code, response.text) == (200, "falsy error means success")


@pytest.mark.parametrize(
    "path, mode, body",
    [
        ("/respond", "timer-callback", "from a timer"),
        ("/respond", "promise-callback", "from a promise"),
        ("/async-respond", "await", "async fine"),
    ],
)
def test_returning_without_calling_back_leaves_the_invocation_open_until_the_callback(engine, path, mode, body):
    response = call(engine, path, mode=mode)
    assert (response.status_code, response.text) == (200, body)


# --- error rows --------------------------------------------------------------------------------


def test_callback_with_a_string_error_is_500_text_plain(engine):
    response = respond(engine, "error-string")
    assert response.status_code == 500
    assert media_type(response) == "text/plain"
    assert response.text == "Something went very, very wrong."


@pytest.mark.parametrize(
    "mode, name, message",
    [("error-error", "Error", "bad value"), ("error-type-error", "TypeError", "wrong type"), ("error-custom", "QuotaError", "over quota")],
)
def test_callback_with_an_error_object_is_500_json_message_and_name_without_stack(engine, mode, name, message):
    response = respond(engine, mode)
    assert response.status_code == 500
    assert media_type(response) == "application/json"
    assert response.json() == {"message": message, "name": name}


def test_the_error_stack_goes_to_the_logs_not_the_body(engine):
    response = respond(engine, "error-error")
    assert "stack" not in response.json()
    invocation_id = response.headers["x-request-id"]
    wait_for(
        lambda: any("respond.js" in json.dumps(r) for r in records_for(engine, invocation_id)),
        what="a log line of the invocation carrying the stack",
    )


@pytest.mark.parametrize("mode, value", [("error-object", {"code": 20404, "detail": "not found"}), ("error-array", ["a", 1]), ("error-number", 42)])
def test_callback_with_an_object_or_number_error_is_500_json_of_it(engine, mode, value):
    response = respond(engine, mode)
    assert response.status_code == 500
    assert media_type(response) == "application/json"
    assert response.json() == value


@pytest.mark.parametrize(
    "path, mode, name, message",
    [
        ("/respond", "throw", "RangeError", "handler blew up"),
        ("/respond", "throw-string", "Error", "a thrown string"),
        ("/respond", "returned-rejection", "TypeError", "rejected promise"),
        ("/async-respond", "throw", "TypeError", "async bad"),
        ("/respond", "unhandled-rejection", "SyntaxError", "nobody caught me"),
        ("/respond", "uncaught-exception", "EvalError", "uncaught in a timer"),
    ],
    ids=["sync-throw", "sync-throw-string", "returned-rejected-promise", "async-throw",
         "unhandled-rejection-before-callback", "uncaught-exception-before-callback"],
)
def test_handler_errors_before_the_callback_are_500_as_for_an_error(engine, path, mode, name, message):
    """Sync throw, rejected (returned) promise, unhandled rejection or uncaught exception before the callback."""
    start = time.monotonic()
    response = call(engine, path, mode=mode)
    assert response.status_code == 500
    assert media_type(response) == "application/json"
    assert response.json() == {"message": message, "name": name}
    assert time.monotonic() - start < 4, "the error must end the invocation, not the time limit"
    assert respond(engine, "text").text == "This is fine"


def test_dev_mode_puts_the_stack_in_the_error_body(dev_engine):
    for mode in ("error-error", "throw"):
        response = respond(dev_engine, mode)
        assert response.status_code == 500
        assert media_type(response) == "application/json"
        body = response.json()
        assert set(body) == {"message", "name", "stack"}, body
        assert "respond.js" in body["stack"]
    text = respond(dev_engine, "error-string")
    assert (text.status_code, media_type(text), text.text) == (500, "text/plain", "Something went very, very wrong.")


def test_process_exit_in_a_handler_is_an_error_and_the_worker_keeps_serving(engine):
    """A handler cannot end its worker: process.exit() throws inside it (a 500 naming it)."""
    response = respond(engine, "exit")
    assert response.status_code == 500
    assert "process.exit" in response.json()["message"]
    assert respond(engine, "text").text == "This is fine"


# --- first call wins -----------------------------------------------------------------------------


def test_first_callback_wins_and_later_calls_are_logged(engine):
    response = respond(engine, "first-wins")
    assert (response.status_code, response.text) == (200, "first")
    invocation_id = response.headers["x-request-id"]
    wait_for(
        lambda: any("callback" in str(r.get("message", "")).lower() for r in records_for(engine, invocation_id)
                    if r.get("event") == "handler_log"),
        what="a log line about the ignored second callback",
    )


@pytest.mark.parametrize(
    "mode, status, body",
    [("first-wins-error", 200, "first"), ("error-then-success", 500, "first error"), ("throw-after-callback", 200, "done")],
)
def test_nothing_after_the_first_callback_changes_the_reply(engine, mode, status, body):
    response = respond(engine, mode)
    assert (response.status_code, response.text) == (status, body)
    assert respond(engine, "text").status_code == 200


# --- missing handler, load errors ------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/load/no-handler", "/load/handler-not-function"])
def test_module_without_a_handler_function_is_500_json_naming_the_file(engine, path):
    response = call(engine, path)
    assert response.status_code == 500
    assert media_type(response) == "application/json"
    message = response.json()["message"]
    assert "handler" in message and f"functions{path}.js" in message, message


@pytest.mark.parametrize(
    "path, evidence",
    [
        ("/load/syntax-error", "SyntaxError"),
        ("/load/require-missing", "module-that-does-not-exist-4f2a"),
        ("/load/top-level-throw", "boom while loading top-level-throw"),
    ],
)
def test_module_that_fails_to_load_is_500_json_with_the_load_error_naming_the_file(engine, path, evidence):
    response = call(engine, path)
    assert response.status_code == 500
    assert media_type(response) == "application/json"
    body = response.json()
    assert set(body) == {"message", "name"}
    assert evidence in json.dumps(body)
    assert f"functions{path}.js" in body["message"], body


def test_a_broken_module_does_not_break_the_other_functions(engine):
    call(engine, "/load/syntax-error")
    assert respond(engine, "text").text == "This is fine"


# --- time limit ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["never", "sleep", "busy", "await-forever"])
def test_no_callback_within_the_function_time_limit_is_504_and_the_worker_is_replaced(engine, backend, mode):
    """/slow has a 1 s limit: returning (or resolving) without a callback, a late timer, a CPU loop."""
    wait_warm(engine)
    start = time.monotonic()
    response = call(engine, "/slow", mode=mode)
    elapsed = time.monotonic() - start
    assert response.status_code == 504
    assert media_type(response) == "text/plain"
    assert "timed out" in response.text.lower()
    assert SHORT_LIMIT_S <= elapsed < SHORT_LIMIT_S + 1, elapsed
    assert_worker_gone(engine, backend, worker_of(engine, response.headers["x-request-id"]))
    assert respond(engine, "text").text == "This is fine"


def test_time_limit_is_per_function(engine):
    """/slow-ok calls back after 1.5 s under the default limit while /slow is capped at 1 s."""
    response = call(engine, "/slow-ok")
    assert (response.status_code, response.text) == (200, "finished within the default limit")


# --- worker death, response size ---------------------------------------------------------------


def test_running_out_of_memory_is_reported_and_the_pool_heals(engine_factory, backend, request):
    """In a container the worker hits its memory limit and dies: 502 naming memory. Under the
    process backend's address-space rlimit, V8 fails the allocation first (a RangeError: 500).
    Its own engine: a process-backend worker that survived that is not one to share with the
    other rows (its address space is spent)."""
    _require_docker(backend, request)
    engine = engine_factory(JS, backend=backend, config=CONFIG)
    response = respond(engine, "memory")
    assert response.status_code in (500, 502), response.text
    if response.status_code == 502:
        assert media_type(response) == "text/plain"
        assert "memory" in response.text.lower()
    for _ in range(4):
        assert respond(engine, "text").text == "This is fine"


@pytest.mark.parametrize("mode", ["big-text", "big-buffer", "big-response"])
def test_response_body_of_exactly_4_mib_is_delivered(engine, mode):
    response = respond(engine, mode, n=str(4 * MiB))
    assert response.status_code == 200
    assert len(response.content) == 4 * MiB


@pytest.mark.parametrize(
    "mode, n",
    [
        ("big-text", 4 * MiB + 1),
        ("big-multibyte", 2 * MiB + 1),  # 4 MiB + 2 bytes once UTF-8 encoded: the cap is on bytes
        ("big-buffer", 4 * MiB + 1),
        ("big-buffer", 7 * MiB),  # base64 of it exceeds the 8 MiB protocol frame
        ("big-json", 4 * MiB),
        ("big-response", 4 * MiB + 1),
    ],
)
def test_response_body_over_4_mib_is_502_text_saying_it_was_too_large(engine, mode, n):
    response = respond(engine, mode, n=str(n))
    assert response.status_code == 502
    assert media_type(response) == "text/plain"
    assert "too large" in response.text.lower()
    assert respond(engine, "text").text == "This is fine"


# === Twilio.Response ==========================================================================


def test_default_response_is_200_with_empty_body_and_no_content_type(engine):
    response = build(engine, "default")
    assert (response.status_code, content_type(response), response.content) == (200, None, b"")


def test_constructor_takes_status_code_headers_and_body(engine):
    response = build(engine, "constructor")
    assert response.status_code == 201
    assert response.headers["x-a"] == "1"
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"a": 1}


def test_every_mutator_returns_the_response(engine):
    assert build(engine, "chainable").json() == {"chain": [True] * 6}


@pytest.mark.parametrize("mode, status, body", [("status-204", 204, b""), ("status-418", 418, b"I'm a teapot")])
def test_set_status_code_sets_the_reply_status(engine, mode, status, body):
    response = build(engine, mode)
    assert (response.status_code, response.content) == (status, body)


def test_a_handlers_own_500_is_a_reply_like_any_other(engine):
    response = build(engine, "status-500-body")
    assert response.status_code == 500
    assert response.json() == {"ok": False}


def test_location_header_with_a_redirect_status(engine):
    response = build(engine, "redirect")
    assert (response.status_code, response.headers["location"]) == (302, "/elsewhere")


@pytest.mark.parametrize("mode, text", [("body-string", "plain text"), ("body-unicode", "héllo ✓ 🎉")])
def test_string_body_is_sent_as_is_with_text_plain_utf8_when_no_type_is_set(engine, mode, text):
    response = build(engine, mode)
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.content == text.encode("utf-8")


def test_string_body_keeps_the_content_type_the_handler_set(engine):
    response = build(engine, "body-string-custom-type")
    assert response.headers.get_list("content-type") == ["text/html; charset=utf-8"]
    assert response.text == "<b>bold</b>"


@pytest.mark.parametrize("mode, value", [("body-object", {"everything": "is alright"}), ("body-array", [1, "two", None])])
def test_object_or_array_body_is_json_with_application_json_when_no_type_is_set(engine, mode, value):
    response = build(engine, mode)
    assert response.headers.get_list("content-type") == ["application/json"]
    assert json.loads(response.content) == value


def test_object_body_keeps_the_content_type_the_handler_set(engine):
    response = build(engine, "body-object-custom-type")
    assert response.headers.get_list("content-type") == ["application/vnd.api+json"]
    assert response.json() == {"data": []}


def test_buffer_body_is_sent_byte_for_byte(engine):
    response = build(engine, "body-buffer")
    assert response.headers["content-type"] == "image/png"
    assert response.content == bytes(i % 256 for i in range(512))
    raw = build(engine, "body-buffer-no-type")
    assert raw.content == b"\x00\x01\x02\xff\r\n"


def test_null_body_is_empty(engine):
    response = build(engine, "body-null")
    assert (response.status_code, response.content) == (200, b"")


def test_append_header_on_an_existing_name_is_sent_as_repeated_lines(engine):
    status, headers, _ = raw_get(engine, "/response?mode=multi-append")
    assert status == 200
    assert [v for n, v in headers if n.lower() == "x-multi"] == ["a", "b", "c"]


def test_append_header_with_an_array_sends_one_line_per_value(engine):
    assert build(engine, "append-array").headers.get_list("x-list") == ["a", "b"]


def test_append_header_with_a_non_array_object_value_is_an_error(engine):
    response = build(engine, "append-object")
    assert response.status_code == 500
    assert media_type(response) == "application/json"
    assert set(response.json()) == {"message", "name"}
    assert "x-bad" not in response.headers


def test_set_headers_replaces_all_headers_cookies_included(engine):
    response = build(engine, "set-headers-replaces")
    assert response.headers["x-new"] == "2"
    assert "x-old" not in response.headers
    assert "set-cookie" not in response.headers


def test_set_headers_with_an_array_value_sends_repeated_lines(engine):
    response = build(engine, "set-headers-array")
    assert response.headers.get_list("x-l") == ["a", "b"]
    assert response.headers["x-s"] == "s"


def test_append_after_set_headers_adds_a_value(engine):
    assert build(engine, "set-headers-then-append").headers.get_list("x-a") == ["1", "2"]


def test_each_cookie_is_its_own_set_cookie_line_with_attributes_joined_by_semicolons(engine):
    assert build(engine, "cookies").headers.get_list("set-cookie") == ["session=abc;Path=/;HttpOnly", "theme=dark"]


def test_remove_cookie_drops_earlier_ones_for_that_name_and_expires_it(engine):
    assert build(engine, "remove-cookie").headers.get_list("set-cookie") == ["b=2", "a=;Max-Age=0"]
    assert build(engine, "remove-cookie-never-set").headers.get_list("set-cookie") == ["gone=;Max-Age=0"]


@pytest.mark.parametrize("mode", ["crlf-value", "lf-value", "cr-value", "lf-name"])
def test_header_with_cr_or_lf_is_dropped_with_a_logged_warning(engine, mode):
    status, headers, body = raw_get(engine, f"/response?mode={mode}")
    names = [n.lower() for n, _ in headers]
    assert (status, body) == (200, b"body")
    assert ("x-good", "ok") in [(n.lower(), v) for n, v in headers]
    assert "injected" not in names and not any(n.startswith("x-bad") for n in names)
    assert not any("injected" in v.lower() for _, v in headers)
    invocation_id = build(engine, mode).headers["x-request-id"]
    wait_for_warning(engine, invocation_id, "x-bad")


def test_cookie_with_cr_or_lf_is_dropped(engine):
    status, headers, _ = raw_get(engine, "/response?mode=crlf-cookie")
    assert status == 200
    assert [v for n, v in headers if n.lower() == "set-cookie"] == ["good=1"]


@pytest.mark.parametrize("mode", ["framing-append", "framing-set-headers"])
def test_framing_headers_set_by_the_handler_are_dropped_and_the_engine_frames_the_reply(engine, mode):
    status, headers, body = raw_get(engine, f"/response?mode={mode}")
    assert (status, body) == (200, b"framed by the engine")
    values = [(n.lower(), v) for n, v in headers]
    assert ("content-length", "12345") not in values
    assert not any(v in ("x-handler-te", "x-handler-conn") for _, v in values)
    assert [v for n, v in values if n == "content-length"] in ([], [str(len(body))])
    invocation_id = build(engine, mode).headers["x-request-id"]
    wait_for_warning(engine, invocation_id, "content-length")


@pytest.mark.parametrize("mode", ["big", "big-buffer"])
def test_response_body_over_4_mib_is_502(engine, mode):
    response = build(engine, mode)
    assert response.status_code == 502
    assert media_type(response) == "text/plain"
    assert "too large" in response.text.lower()


def test_response_body_of_exactly_4_mib_is_sent(engine):
    response = build(engine, "exactly-4-mib")
    assert (response.status_code, len(response.content)) == (200, 4 * MiB)


# === event ====================================================================================


def test_query_parameters_become_the_event(engine):
    event = call(engine, "/echo", age="42", firstName="Rick").json()
    assert params_of(event) == {"age": "42", "firstName": "Rick"}
    assert set(event["request"]) == {"headers", "cookies"}


def test_json_body_merges_with_query_and_body_keys_win(engine):
    with engine.client() as client:
        event = client.post("/echo?age=42&firstName=Rick", json={"color": "orange", "age": "43"}).json()
    assert params_of(event) == {"age": "43", "firstName": "Rick", "color": "orange"}


def test_form_body_merges_with_query_and_repeated_keys_become_lists(engine):
    with engine.client() as client:
        form = client.post("/echo?a=query&b=query", data={"a": "form", "c": "form"}).json()
        repeated = client.get("/echo?a=3&b=x&a=1&a=2").json()
    assert params_of(form) == {"a": "form", "b": "query", "c": "form"}
    assert params_of(repeated) == {"a": ["3", "1", "2"], "b": "x"}


def test_json_values_keep_their_types(engine):
    payload = {"n": 5, "f": 1.5, "t": True, "z": None, "o": {"x": [1, "2", None, False]}}
    with engine.client() as client:
        assert params_of(client.post("/echo", json=payload).json()) == payload


def test_request_headers_are_lowercased_filtered_and_repeated_ones_listed(engine):
    sent = [("X-One", "1"), ("X-Multi", "a"), ("x-multi", "b"), ("Via", "1.1 proxy"), ("X-Forwarded-For", "203.0.113.7"),
            ("Referer", "https://example.com/"), ("X-Amz-Date", "x"), ("X-Real-IP", "203.0.113.7")]
    status, _, body = raw_get(engine, "/echo", sent)
    assert status == 200
    assert json.loads(body)["request"]["headers"] == {"x-one": "1", "x-multi": ["a", "b"]}


def test_request_cookies_are_decoded_and_the_first_occurrence_wins(engine):
    cookie = "a=1; b=hello%20world; a=2; empty="
    status, _, body = raw_get(engine, "/echo", [("Cookie", cookie)])
    assert status == 200
    assert json.loads(body)["request"]["cookies"] == {"a": "1", "b": "hello world", "empty": ""}
    _, _, none = raw_get(engine, "/echo")
    assert json.loads(none)["request"] == {"headers": {}, "cookies": {}}


def test_a_parameter_named_request_replaces_event_request(engine):
    assert call(engine, "/echo", request="from-query", a="1").json() == {"request": "from-query", "a": "1"}


# === context ==================================================================================


def test_context_has_the_built_ins_env_variables_and_get_twilio_client(engine):
    ctx = call(engine, "/ctx", PATH="nope").json()
    assert ctx == {
        "PATH": "/ctx",
        "DOMAIN_NAME": f"127.0.0.1:{engine.port}",
        "SERVICE_SID": SERVICE_SID,
        "ENVIRONMENT_SID": ENVIRONMENT_SID,
        "GREETING": "hello from .env",
        "getTwilioClient": "<function>",
    }
    assert call(engine, "/sub/ctx").json() == {"PATH": "/sub/ctx"}
    with engine.client() as client:
        assert client.get("/ctx", headers={"Host": "fn.example.test"}).json()["DOMAIN_NAME"] == "fn.example.test"


def test_env_file_values_override_the_four_built_ins(env_engine):
    assert call(env_engine, "/ctx", a="1").json() == {
        "PATH": "/path-from-env",
        "DOMAIN_NAME": "domain-from-env.example",
        "SERVICE_SID": "ZSeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
        "ENVIRONMENT_SID": "ZEeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
        "GREETING": "hello from js-context-env",
    }


def test_get_twilio_client_without_credentials_throws_and_the_uncaught_throw_is_a_500(engine):
    response = call(engine, "/client")
    assert response.status_code == 500
    assert media_type(response) == "application/json"
    body = response.json()
    assert set(body) == {"message", "name"}
    assert "ACCOUNT_SID" in body["message"]


def test_get_twilio_client_builds_the_official_client_from_the_env_credentials(env_engine):
    response = call(env_engine, "/client")
    assert response.status_code == 200, response.text
    assert response.json() == {"accountSid": "AC00000000000000000000000000000001", "hasMessages": True}


def test_runtime_get_sync_without_credentials_is_a_500(engine):
    response = call(engine, "/sync")
    assert response.status_code == 500
    assert set(response.json()) == {"message", "name"}


# === globals ==================================================================================


def test_twilio_runtime_and_functions_are_globals_usable_at_module_top_level(engine):
    response = call(engine, "/globals", name="Ada")
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["checks"] == dict.fromkeys(
        ["MessagingResponse", "VoiceResponse", "FaxResponse", "AccessToken", "grants",
         "validateRequest accepts", "validateRequest rejects"], True)
    js_functions = sorted(
        p.relative_to(JS / "functions").as_posix().removesuffix(".js").removesuffix(".private")
        for p in (JS / "functions").rglob("*.js")
    )
    assert data["at_load"] == {
        "twiml": XML + "<Response/>",
        "response": "Response",
        "functions": js_functions,  # private ones included
        "functionsGlobal": js_functions,
        "assets": ["/my-file.txt", "/secret.txt"],  # the private asset included
        "greeting": "Hello, top level!",  # a private function require()d by its path at load time
        "sameViaFunctions": True,
    }
    assert data["asset"] == (JS / "assets" / "my-file.txt").read_text()
    assert data["secret"] == "a private asset\n"
    assert data["greeting"] == "Hello, Ada!"


def test_private_function_and_asset_are_not_reachable_by_url(engine):
    assert call(engine, "/helpers/greet").status_code == 404
    assert call(engine, "/helpers/greet.private").status_code == 404
    assert call(engine, "/secret.txt").status_code == 404
    assert call(engine, "/my-file.txt").text == (JS / "assets" / "my-file.txt").read_text()


# === logs =====================================================================================


def test_console_levels_become_handler_log_lines_tagged_with_the_invocation(engine):
    """console.log/info/debug → info, console.warn → warn, console.error → error;
    process.stdout/stderr → info/error."""
    tag = uuid.uuid4().hex[:10]
    response = call(engine, "/log", tag=tag)
    assert response.text == "logged"
    invocation_id = response.headers["x-request-id"]
    expected = {
        f"log line {tag}": ("info",),
        f"info line {tag}": ("info",),
        f"debug line {tag}": ("info",),
        f"warn line {tag}": ("warn",),
        f"error line {tag}": ("error",),
        f"stdout write {tag}": ("info",),
        f"stderr write {tag}": ("error",),
    }

    def lines():
        found = {r["message"]: r for r in records_for(engine, invocation_id) if r.get("event") == "handler_log"}
        return found if set(expected) <= set(found) else None

    found = wait_for(lines, what="every console line")
    for message, levels in expected.items():
        record = found[message]
        assert record["stream_level"] in levels, (message, record)
        assert record["service"] == "js-conformance"
        assert record["function"] in ("log", "/log")
    assert found[f"debug line {tag}"]["level"] == "info"  # the engine's log level of the line
    assert found[f"warn line {tag}"]["level"] in ("warn", "warning")
    assert found[f"error line {tag}"]["level"] == "error"


# === package.json dependencies, runtimes ========================================================


def test_package_json_dependencies_are_requireable_and_dev_dependencies_are_not_installed(engine):
    response = call(engine, "/deps")
    assert response.status_code == 200, response.text
    assert response.json() == {"isNumber": [True, True, False], "version": "7.0.0", "devDependency": "MODULE_NOT_FOUND"}


def test_a_project_with_python_and_js_functions_gets_a_pool_per_runtime(engine, backend):
    js = call(engine, "/js-hello").json()
    py = call(engine, "/py-hello").json()
    assert js["runtime"] == "node" and py["runtime"] == "python"
    if backend.startswith("docker"):
        assert js["version"].split(".")[0] == "22", "the runner image carries Node.js 22"
        images = subprocess.run(
            ["docker", "ps", "--filter", "label=io.functions-engine.service=js-conformance",
             "--format", '{{.Label "io.functions-engine.runtime"}} {{.Image}}'],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout.split("\n")
        by_runtime: dict[str, set[str]] = {}
        for line in filter(None, images):
            runtime, image = line.split()
            by_runtime.setdefault(runtime, set()).add(image)
        assert {"node", "python"} <= set(by_runtime), by_runtime
        assert not by_runtime["node"] & by_runtime["python"], "one service image per runtime"
        assert all(i.startswith("engine-service-js-conformance:") for s in by_runtime.values() for i in s)


@pytest.mark.docker
def test_node_runner_and_service_images(docker_available):
    """engine-runner-node:<hash12> carries Node.js 22 and twilio, runs as 10001, and is reused as
    is; the service image has the project's dependencies in /srv/project/node_modules, not its
    devDependencies, and no .env. (Images are the docker backend's, so this runs once, not per backend.)"""
    import docker

    from engine import images

    client = docker.from_env()
    try:
        tag = images.ensure_runner_image(client, "node")
        assert re.fullmatch(r"engine-runner-node:[0-9a-f]{12}", tag)
        assert images.ensure_runner_image(client, "node") == tag, "an unchanged runner is reused"
        config = client.api.inspect_image(tag)["Config"]
        assert config["Entrypoint"] == ["node", "/opt/runner/runner.js"]
        assert config["Labels"]["io.functions-engine.runtime"] == "node"
        out = client.containers.run(
            tag, ["-e", "console.log(process.versions.node, process.getuid(), require('/opt/runner/node_modules/twilio/package.json').version)"],
            entrypoint="node", network_mode="none", remove=True,
        ).decode().split()
        assert out[0].split(".")[0] == "22" and out[1] == "10001" and out[2].split(".")[0] == "6", out
        service = images.ensure_service_image(client, "js-conformance", JS, tag)
        listing = client.containers.run(
            service, ["-c", "ls /srv/project/node_modules; ls -a /srv/project"], entrypoint="sh",
            network_mode="none", remove=True,
        ).decode().split()
        assert "is-number" in listing and "left-pad" not in listing and ".env" not in listing, listing
    finally:
        client.close()


def _project_with_package_json(root: Path, package_json: dict) -> Path:
    (root / "functions").mkdir(parents=True)
    (root / "functions" / "hello.js").write_text("exports.handler = (context, event, callback) => callback(null, 'hi');\n")
    (root / "package.json").write_text(json.dumps(package_json))
    return root


@pytest.mark.parametrize(
    "spec, evidence",
    [
        ("git+https://github.com/jonschlinkert/is-number.git", "is not allowed"),
        ("file:../somewhere", "is not allowed"),
        ("jonschlinkert/is-number", "is not allowed"),
        ("https://10.0.0.1/is-number.tgz", "is not allowed"),
        ("npm:is-odd@3", "is not allowed"),
    ],
    ids=["git", "file", "github-shorthand", "url", "alias"],
)
def test_package_json_specs_other_than_registry_versions_are_refused_at_start(engine_factory, backend, request, tmp_path, spec, evidence):
    _require_docker(backend, request)
    project = _project_with_package_json(tmp_path / "badspec", {"dependencies": {"is-number": spec}})
    running = engine_factory(project, backend=backend, wait_ready=False)
    assert running.proc.wait(timeout=120) == 1
    logs = running.logs()
    assert "package.json" in logs and evidence in logs and spec in logs, logs[-3000:]


def test_a_package_json_build_error_is_the_service_s_503_naming_package_json_and_npms_error_line(
        engine_factory, backend, request, tmp_path):
    """The install fails only when npm runs, after the port is open (images are built in the
    background): the engine is ready and its requests are answered with a 503 naming the service,
    package.json and npm's error line; the log says the same (docs/operating.md, "Start-up and image builds")."""
    _require_docker(backend, request)
    missing = f"no-such-package-{uuid.uuid4().hex[:12]}"
    project = _project_with_package_json(tmp_path / "badpkg", {"dependencies": {missing: "1.0.0"}})
    running = engine_factory(project, backend=backend, ready_timeout=180)
    with running.client(timeout=180) as client:
        reply = client.get("/hello")
    assert reply.status_code == 503, reply.text
    assert "image could not be built" in reply.text and "service badpkg" in reply.text, reply.text
    assert str(project / "package.json") in reply.text, reply.text
    assert re.search(r"404 Not Found .*" + re.escape(missing), reply.text), reply.text
    logs = running.logs()
    line = next((l for l in logs.splitlines() if "image_build_failed" in l), None)
    assert line is not None and str(project / "package.json") in line, logs[-3000:]


# === leftover work after the callback ===========================================================

DELAY_S = 1.0  # leftover work would fire this long after it was scheduled


def leftover(engine, **params: str) -> dict:
    with engine.client() as client:
        response = client.get("/leftover", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def assert_never_fired(engine, tag: str, scheduled_at: float) -> None:
    remaining = scheduled_at + DELAY_S + 1.0 - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
    assert f"LEFTOVER FIRED {tag}" not in engine.logs(), f"leftover work {tag} ran after the callback"


@pytest.mark.parametrize(
    "mode",
    ["timeout-before-callback", "timeout-after-callback", "interval", "immediate-and-tick", "promise-chain",
     "async-continuation", "resolved-chain", "socket"],
)
def test_leftover_timers_promises_and_sockets_never_run_and_the_worker_is_reused(leftovers_engine, mode):
    """The next invocation runs on the same worker across the moment the leftover was due: its
    module state shows nothing of the earlier invocation ran (not a line after the callback)."""
    tag = uuid.uuid4().hex[:10]
    scheduled_at = time.monotonic()
    first = leftover(leftovers_engine, mode=mode, tag=tag, delay=str(DELAY_S))
    later = leftover(leftovers_engine, mode="sleep-then-state", seconds=str(DELAY_S + 0.5))
    assert later["worker"] == first["worker"], "a worker whose leftovers were all stopped is reused"
    assert not [t for t in later["fired"] if t.startswith(tag)], later["fired"]
    assert_never_fired(leftovers_engine, tag, scheduled_at)
    assert not [t for t in leftover(leftovers_engine, mode="state")["fired"] if t.startswith(tag)]


def test_a_pending_promise_the_module_could_settle_later_gets_the_worker_replaced(leftovers_engine):
    """The runner cannot prove a reachable pending promise will never settle, so the worker is
    recycled before the next invocation; settling it there finds nothing to run."""
    tag = uuid.uuid4().hex[:10]
    scheduled_at = time.monotonic()
    first = leftover(leftovers_engine, mode="pending-resolver", tag=tag)
    later = leftover(leftovers_engine, mode="resolve-pending")
    assert later["worker"] != first["worker"], "the worker holding a settle-able promise was reused"
    assert tag not in later["fired"]
    assert_never_fired(leftovers_engine, tag, scheduled_at)


def test_a_clean_worker_keeps_its_module_state_between_invocations(leftovers_engine):
    """Control for the tests above: without leftovers, consecutive invocations share one worker."""
    assert len({leftover(leftovers_engine, mode="state")["worker"] for _ in range(5)}) == 1
