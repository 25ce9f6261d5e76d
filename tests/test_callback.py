"""Conformance: the `callback(error, response)` table of behavior.md.

Each row of the table, first-call-wins, handler errors with and without dev mode, missing
handlers and load errors, the time limit (504, worker killed and replaced), worker death (502)
and the 4 MiB response cap (502).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import httpx
import pytest
from twilio.twiml.fax_response import FaxResponse
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

PROJECTS = Path(__file__).resolve().parent / "projects"
CALLBACK = PROJECTS / "callback"
MiB = 1024 * 1024
SHORT_LIMIT_S = 1.0

CONFIG = {
    "min_idle": 2,
    "max_workers": 4,
    "services": {
        "callback": {
            "functions": {
                "/slow-sleep": {"time_limit_s": SHORT_LIMIT_S},
                "/slow-async": {"time_limit_s": SHORT_LIMIT_S},
                "/slow-busy": {"time_limit_s": SHORT_LIMIT_S},
                "/no-callback": {"time_limit_s": SHORT_LIMIT_S},
                # Rows that must answer at once fail fast instead of waiting 10 s.
                "/respond": {"time_limit_s": 5},
                "/async-respond": {"time_limit_s": 5},
            }
        }
    },
}


def _require_docker(backend, request):
    if backend != "process":
        request.getfixturevalue("docker_available")


@pytest.fixture(scope="module")
def engine(module_engine_factory, backend, request):
    _require_docker(backend, request)
    return module_engine_factory(CALLBACK, backend=backend, config=CONFIG)


@pytest.fixture(scope="module")
def dev_engine(module_engine_factory, backend, request):
    _require_docker(backend, request)
    return module_engine_factory(CALLBACK, backend=backend, config={"dev_mode": True})


# --- helpers ---------------------------------------------------------------------------------


def call(engine, path: str, **params: str) -> httpx.Response:
    with engine.client() as client:
        return client.get(path, params=params)


def respond(engine, mode: str, **params: str) -> httpx.Response:
    return call(engine, "/respond", mode=mode, **params)


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
    """Let the pool refill (a timed-out worker is replaced) so the next timing starts on a warm worker."""
    wait_for(lambda: httpx.get(engine.admin_url + "/readyz", timeout=2).status_code == 200, timeout, "a warm pool")


def worker_of(engine, invocation_id: str) -> str:
    """The `WORKER host:pid` line a slow handler prints before it stalls."""

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


# --- success rows ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["none", "null", "null-null"])
def test_callback_without_response_is_200_empty_with_no_content_type(engine, mode):
    """`callback()` / `callback(None)` / `callback(None, None)`."""
    response = respond(engine, mode)
    assert response.status_code == 200
    assert content_type(response) is None
    assert response.content == b""


@pytest.mark.parametrize("mode, body", [("text", "This is fine"), ("unicode", "héllo ✓ 🎉")])
def test_callback_with_a_string_is_200_text_plain_utf8(engine, mode, body):
    response = respond(engine, mode)
    assert response.status_code == 200
    assert content_type(response) == "text/plain; charset=utf-8"
    assert response.content == body.encode("utf-8")


@pytest.mark.parametrize(
    "mode, value",
    [
        ("dict", {"a": 1, "b": [1, 2], "c": None, "d": "ü"}),
        ("list", [1, "two", None, {"x": True}]),
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


def _messaging():
    r = MessagingResponse()
    r.message("Hello, World!")
    return r


def _voice():
    r = VoiceResponse()
    r.say("Ahoy", voice="alice")
    r.play("https://demo.twilio.com/docs/classic.mp3")
    return r


def _fax():
    r = FaxResponse()
    r.receive(action="/fax/received")
    return r


@pytest.mark.parametrize("kind, build", [("messaging", _messaging), ("voice", _voice), ("fax", _fax)])
def test_callback_with_twiml_is_200_text_xml_of_its_string_form(engine, kind, build):
    response = respond(engine, f"twiml-{kind}")
    assert response.status_code == 200
    assert content_type(response) == "text/xml; charset=utf-8"
    assert response.text == str(build())


@pytest.mark.parametrize("mode, body", [("bytes", bytes(range(256)) * 4), ("bytearray", b"\x00\xff\r\n\x1b" * 3)])
def test_callback_with_bytes_is_200_octet_stream_byte_exact(engine, mode, body):
    response = respond(engine, mode)
    assert response.status_code == 200
    assert content_type(response) == "application/octet-stream"
    assert response.content == body


@pytest.mark.parametrize("mode", ["falsy-error-empty-string", "falsy-error-zero", "falsy-error-false"])
def test_a_falsy_error_argument_is_not_an_error(engine, mode):
    """Only a truthy `error` makes a 500 (Python truthiness, as JS's for `""`, `0`, `false`)."""
    response = respond(engine, mode)
    assert response.status_code == 200
    assert response.text == "falsy error means success"


def test_async_handler_calls_back_after_awaiting(engine):
    response = call(engine, "/async-respond", mode="text")
    assert (response.status_code, response.text) == (200, "async fine")
    awaited = call(engine, "/async-respond", mode="await-future")
    assert (awaited.status_code, awaited.text) == (200, "resolved")


@pytest.mark.parametrize(
    "path, mode, body",
    [
        ("/respond", "timer-callback", "from a timer thread"),
        ("/async-respond", "call-later", "from call_later"),
        ("/async-respond", "task-calls-back", "from a task"),
    ],
)
def test_returning_without_calling_back_leaves_the_invocation_open_until_the_callback(engine, path, mode, body):
    """Like a JS handler calling back from a timer or a promise: returning is not the end."""
    response = call(engine, path, mode=mode)
    assert (response.status_code, response.text) == (200, body)


# --- error rows ------------------------------------------------------------------------------


def test_callback_with_a_string_error_is_500_text_plain(engine):
    response = respond(engine, "error-string")
    assert response.status_code == 500
    assert media_type(response) == "text/plain"
    assert response.text == "Something went very, very wrong."


@pytest.mark.parametrize(
    "mode, name, message",
    [("error-exception", "ValueError", "bad value"), ("error-raised-exception", "ValueError", "bad value"), ("error-custom", "QuotaError", "over quota")],
)
def test_callback_with_an_exception_is_500_json_message_and_name_without_stack(engine, mode, name, message):
    """Python reading of `Error → {"message","name"}`: `name` is the class name, `message` is `str(exc)`."""
    response = respond(engine, mode)
    assert response.status_code == 500
    assert media_type(response) == "application/json"
    assert response.json() == {"message": message, "name": name}


@pytest.mark.parametrize("mode", ["error-raised-exception", "raise"])
def test_exception_stack_goes_to_the_logs_not_the_body(engine, mode):
    """An exception that was raised has a traceback (one never raised has none in Python)."""
    response = respond(engine, mode)
    invocation_id = response.headers["x-request-id"]
    assert "stack" not in response.json()
    wait_for(
        lambda: any("respond.py" in json.dumps(r) for r in records_for(engine, invocation_id)),
        what="a log line of the invocation carrying the stack",
    )


@pytest.mark.parametrize("mode, value", [("error-dict", {"code": 20404, "detail": "not found"}), ("error-list", ["a", 1]), ("error-number", 42)])
def test_callback_with_an_object_or_number_error_is_500_json_of_it(engine, mode, value):
    response = respond(engine, mode)
    assert response.status_code == 500
    assert media_type(response) == "application/json"
    assert response.json() == value


@pytest.mark.parametrize(
    "path, mode, name, message",
    [
        ("/respond", "raise", "RuntimeError", "handler blew up"),
        ("/async-respond", "raise", "ValueError", "async bad"),
        ("/async-respond", "task-raises", "LookupError", "uncaught in a task"),
        ("/respond", "thread-raises", "RuntimeError", "uncaught in a thread"),
    ],
    ids=["sync-raise", "async-raise", "task-raises-before-callback", "thread-raises-before-callback"],
)
def test_handler_errors_before_the_callback_are_500_as_for_an_exception(engine, path, mode, name, message):
    """Handler raises, coroutine raises, or an uncaught error in its task/thread before the callback."""
    start = time.monotonic()
    response = call(engine, path, mode=mode)
    assert response.status_code == 500
    assert media_type(response) == "application/json"
    assert response.json() == {"message": message, "name": name}
    assert time.monotonic() - start < 4, "the error must end the invocation, not the time limit"


def test_dev_mode_puts_the_stack_in_the_error_body(dev_engine):
    for mode in ("error-raised-exception", "raise"):
        response = respond(dev_engine, mode)
        assert response.status_code == 500
        assert media_type(response) == "application/json"
        body = response.json()
        assert set(body) == {"message", "name", "stack"}, body
        assert "respond.py" in body["stack"]
    text = respond(dev_engine, "error-string")
    assert (text.status_code, media_type(text), text.text) == (500, "text/plain", "Something went very, very wrong.")


# --- first call wins -------------------------------------------------------------------------


def test_first_callback_wins_and_later_calls_are_logged(engine):
    response = respond(engine, "first-wins")
    assert (response.status_code, response.text) == (200, "first")
    invocation_id = response.headers["x-request-id"]
    wait_for(
        lambda: any("callback" in json.dumps(r).lower() and r.get("event") != "invocation"
                    for r in records_for(engine, invocation_id)),
        what="a log line about the ignored second callback",
    )


@pytest.mark.parametrize(
    "mode, status, body",
    [("first-wins-error", 200, "first"), ("error-then-success", 500, "first error"), ("raise-after-callback", 200, "done")],
)
def test_nothing_after_the_first_callback_changes_the_reply(engine, mode, status, body):
    response = respond(engine, mode)
    assert (response.status_code, response.text) == (status, body)
    assert respond(engine, "text").status_code == 200


# --- missing handler, load errors ------------------------------------------------------------


@pytest.mark.parametrize("path, file", [("/no-handler", "no-handler.py"), ("/handler-not-callable", "handler-not-callable.py")])
def test_module_without_a_handler_is_500_json_saying_so(engine, path, file):
    response = call(engine, path)
    assert response.status_code == 500
    assert media_type(response) == "application/json"
    message = response.json()["message"]
    assert "handler" in message and file.removesuffix(".py") in message, message


@pytest.mark.parametrize(
    "path, evidence",
    [
        ("/syntax-error", "SyntaxError"),
        ("/import-error", "module_that_does_not_exist_4f2a"),
        ("/top-level-raise", "boom while loading top-level-raise"),
    ],
)
def test_module_that_fails_to_load_is_500_json_with_the_load_error(engine, path, evidence):
    response = call(engine, path)
    assert response.status_code == 500
    assert media_type(response) == "application/json"
    body = response.json()
    assert "message" in body
    assert evidence in json.dumps(body)
    assert path.lstrip("/") in json.dumps(body), "the load error names the file"


def test_a_broken_module_does_not_break_the_other_functions(engine):
    call(engine, "/syntax-error")
    assert respond(engine, "text").text == "This is fine"


# --- time limit ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/slow-sleep", "/slow-async", "/slow-busy", "/no-callback"])
def test_no_callback_within_the_function_time_limit_is_504_and_the_worker_is_replaced(engine, backend, path):
    wait_warm(engine)
    start = time.monotonic()
    response = call(engine, path)
    elapsed = time.monotonic() - start
    assert response.status_code == 504
    assert media_type(response) == "text/plain"
    assert "timed out" in response.text.lower()
    assert SHORT_LIMIT_S <= elapsed < SHORT_LIMIT_S + 1, elapsed
    assert_worker_gone(engine, backend, worker_of(engine, response.headers["x-request-id"]))
    assert respond(engine, "text").text == "This is fine"


def test_time_limit_is_per_function(engine):
    """/slow-ok sleeps 1.5 s under the default limit while its neighbours are capped at 1 s."""
    response = call(engine, "/slow-ok")
    assert (response.status_code, response.text) == (200, "finished within the raised limit")


@pytest.mark.slow
def test_default_time_limit_is_10_seconds(engine, backend):
    wait_warm(engine)
    start = time.monotonic()
    response = call(engine, "/never")
    elapsed = time.monotonic() - start
    assert response.status_code == 504
    assert media_type(response) == "text/plain"
    assert "timed out" in response.text.lower()
    assert 10 <= elapsed < 11, elapsed
    assert_worker_gone(engine, backend, worker_of(engine, response.headers["x-request-id"]))
    assert respond(engine, "text").text == "This is fine"


# --- worker death ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode, evidence", [("kill", ("signal", "sigkill")), ("exit", ("exit",))])
def test_worker_death_mid_invocation_is_502_text_saying_why_and_the_pool_heals(engine, mode, evidence):
    """The worker killed itself (SIGKILL) or exited (code 3): the body says so, not "killed by the engine"."""
    response = respond(engine, mode)
    assert response.status_code == 502
    assert media_type(response) == "text/plain"
    assert any(word in response.text.lower() for word in evidence), response.text
    assert "by the engine" not in response.text.lower(), response.text
    if mode == "exit":
        assert "3" in response.text
    for _ in range(6):
        assert respond(engine, "text").text == "This is fine"


def test_running_out_of_memory_is_reported_and_the_pool_heals(engine):
    """A worker past its memory limit dies (502 naming memory); where the limit is an address-space
    rlimit, Python raises MemoryError first, which is a handler error (500). Never a success."""
    response = call(engine, "/memory", mib="2048")
    assert response.status_code in (500, 502), response.text
    if response.status_code == 502:
        assert media_type(response) == "text/plain"
        assert "memory" in response.text.lower()
    else:
        assert response.json()["name"] == "MemoryError"
    assert respond(engine, "text").text == "This is fine"


# --- response size ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["big-text", "big-bytes", "big-response"])
def test_response_body_of_exactly_4_mib_is_delivered(engine, mode):
    response = respond(engine, mode, n=str(4 * MiB))
    assert response.status_code == 200
    assert len(response.content) == 4 * MiB


@pytest.mark.parametrize(
    "mode, n",
    [
        ("big-text", 4 * MiB + 1),
        ("big-multibyte", 2 * MiB + 1),  # 4 MiB + 2 bytes once UTF-8 encoded: the cap is on bytes
        ("big-bytes", 4 * MiB + 1),
        ("big-bytes", 7 * MiB),  # base64 of it exceeds the 8 MiB protocol frame
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
