"""Conformance: the `Twilio.Response` section of behavior.md.

Constructor and chainable mutators (snake_case and camelCase), multi-valued headers as repeated
lines, cookies, `set_headers` replacing everything, body serialisation, headers the engine drops
(CR/LF, framing headers), byte-exact bodies and the 4 MiB cap.
"""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path

import httpx
import pytest

PROJECTS = Path(__file__).resolve().parent / "projects"


@pytest.fixture(scope="module")
def engine(module_engine_factory, backend, request):
    if backend != "process":
        request.getfixturevalue("docker_available")
    return module_engine_factory(PROJECTS / "response", backend=backend)


def build(engine, mode: str) -> httpx.Response:
    with engine.client(follow_redirects=False) as client:
        return client.get("/response", params={"mode": mode})


def raw_build(engine, mode: str):
    """The reply's header lines exactly as sent: status, list of (name, value), body."""
    conn = http.client.HTTPConnection("127.0.0.1", engine.port, timeout=30)
    try:
        conn.request("GET", f"/response?mode={mode}")
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


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


def wait_for_warning(engine, invocation_id: str, needle: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in log_records(engine):
            text = json.dumps(record).lower()
            if record.get("invocation_id") == invocation_id and "warn" in str(record.get("level", record.get("stream_level", ""))).lower() and needle in text:
                return
        time.sleep(0.05)
    raise AssertionError(f"no warning about {needle!r} logged for {invocation_id}")


# --- construction ----------------------------------------------------------------------------


def test_default_response_is_200_with_empty_body_and_no_content_type(engine):
    response = build(engine, "default")
    assert response.status_code == 200
    assert "content-type" not in response.headers
    assert response.content == b""


def test_constructor_takes_status_code_headers_and_body(engine):
    """Python reading of `new Twilio.Response({statusCode, headers, body})`: keyword arguments."""
    response = build(engine, "constructor")
    assert response.status_code == 201
    assert response.headers["x-a"] == "1"
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"a": 1}


def test_every_mutator_returns_the_response_in_both_spellings(engine):
    response = build(engine, "chainable")
    assert response.status_code == 200
    assert response.json() == {"snake": [True] * 6, "camel": [True] * 6}


@pytest.mark.parametrize(
    "mode, status, body",
    [("status-204", 204, b""), ("status-418", 418, b"I'm a teapot"), ("status-500-body", 500, b'{"ok":false}')],
)
def test_set_status_code_sets_the_reply_status(engine, mode, status, body):
    response = build(engine, mode)
    assert response.status_code == status
    if mode == "status-500-body":
        # A handler's own 500 is a reply like any other, not an error body.
        assert response.json() == {"ok": False}
    else:
        assert response.content == body


def test_location_header_with_a_redirect_status(engine):
    response = build(engine, "redirect")
    assert response.status_code == 302
    assert response.headers["location"] == "/elsewhere"


# --- body ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode, text", [("body-string", "plain text"), ("body-unicode", "héllo ✓ 🎉")])
def test_string_body_is_sent_as_is_with_text_plain_utf8_when_no_type_is_set(engine, mode, text):
    response = build(engine, mode)
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.content == text.encode("utf-8")


def test_string_body_keeps_the_content_type_the_handler_set(engine):
    response = build(engine, "body-string-custom-type")
    assert response.headers.get_list("content-type") == ["text/html; charset=utf-8"]
    assert response.text == "<b>bold</b>"


@pytest.mark.parametrize("mode, value", [("body-dict", {"everything": "is alright"}), ("body-list", [1, "two", None])])
def test_object_or_array_body_is_json_with_application_json_when_no_type_is_set(engine, mode, value):
    response = build(engine, mode)
    assert response.headers.get_list("content-type") == ["application/json"]
    assert json.loads(response.content) == value


@pytest.mark.parametrize(
    "mode, expected_type, value",
    [("body-dict-custom-type", "application/vnd.api+json", {"data": []}), ("body-dict-after-set-headers", "text/plain", {"a": 1})],
)
def test_object_body_keeps_the_content_type_the_handler_set(engine, mode, expected_type, value):
    response = build(engine, mode)
    assert response.headers.get_list("content-type") == [expected_type]
    assert json.loads(response.content) == value


def test_bytes_body_is_sent_byte_exact(engine):
    response = build(engine, "body-bytes")
    assert response.headers["content-type"] == "image/png"
    assert response.content == bytes(range(256)) * 2


def test_none_body_is_empty(engine):
    response = build(engine, "body-none")
    assert response.status_code == 200
    assert response.content == b""


def test_body_over_4_mib_is_502_saying_it_was_too_large(engine):
    response = build(engine, "big")
    assert response.status_code == 502
    assert response.headers["content-type"].split(";")[0] == "text/plain"
    assert "too large" in response.text.lower()


# --- headers ---------------------------------------------------------------------------------


def test_append_header_on_an_existing_name_is_sent_as_repeated_lines(engine):
    status, headers, _ = raw_build(engine, "multi-append")
    assert status == 200
    assert [v for n, v in headers if n.lower() == "x-multi"] == ["a", "b", "c"]


def test_append_header_with_a_list_sends_one_line_per_value(engine):
    response = build(engine, "append-list")
    assert response.headers.get_list("x-list") == ["a", "b"]


def test_append_header_with_a_non_list_object_value_is_an_error(engine):
    response = build(engine, "append-dict")
    assert response.status_code == 500
    assert response.headers["content-type"].split(";")[0] == "application/json"
    assert set(response.json()) == {"message", "name"}
    assert "x-bad" not in response.headers


def test_set_headers_replaces_all_headers_cookies_included(engine):
    response = build(engine, "set-headers-replaces")
    assert response.headers["x-new"] == "2"
    assert "x-old" not in response.headers
    assert "set-cookie" not in response.headers


def test_set_headers_with_a_list_value_sends_repeated_lines(engine):
    response = build(engine, "set-headers-list")
    assert response.headers.get_list("x-l") == ["a", "b"]
    assert response.headers["x-s"] == "s"


def test_append_after_set_headers_adds_a_value(engine):
    response = build(engine, "set-headers-then-append")
    assert response.headers.get_list("x-a") == ["1", "2"]


# --- cookies ---------------------------------------------------------------------------------


def test_each_cookie_is_its_own_set_cookie_line_with_attributes_joined_by_semicolons(engine):
    response = build(engine, "cookies")
    assert response.headers.get_list("set-cookie") == ["session=abc;Path=/;HttpOnly", "theme=dark"]


def test_remove_cookie_drops_earlier_ones_for_that_name_and_expires_it(engine):
    response = build(engine, "remove-cookie")
    assert response.headers.get_list("set-cookie") == ["b=2", "a=;Max-Age=0"]


def test_remove_cookie_of_a_cookie_never_set_still_expires_it(engine):
    response = build(engine, "remove-cookie-never-set")
    assert response.headers.get_list("set-cookie") == ["gone=;Max-Age=0"]


# --- camelCase aliases -----------------------------------------------------------------------


def test_camel_case_aliases_behave_like_the_snake_case_methods(engine):
    response = build(engine, "camel")
    assert response.status_code == 201
    assert response.headers.get_list("x-a") == ["1", "2"]
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"a": 1}
    assert response.headers.get_list("set-cookie") == ["k=v;Path=/", "gone=;Max-Age=0"]
    replaced = build(engine, "camel-set-headers")
    assert replaced.headers["x-only"] == "1"
    assert "set-cookie" not in replaced.headers


# --- headers the engine drops ----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["crlf-value", "lf-value", "cr-value", "lf-name"])
def test_header_with_cr_or_lf_is_dropped_with_a_logged_warning(engine, mode):
    status, headers, body = raw_build(engine, mode)
    names = [n.lower() for n, _ in headers]
    assert status == 200
    assert body == b"body"
    assert ("x-good", "ok") in [(n.lower(), v) for n, v in headers]
    assert "injected" not in names and not any(n.startswith("x-bad") for n in names)
    assert not any("injected" in v.lower() for _, v in headers)
    with httpx.Client(base_url=engine.url) as client:
        invocation_id = client.get("/response", params={"mode": mode}).headers["x-request-id"]
    wait_for_warning(engine, invocation_id, "x-bad")


def test_cookie_with_cr_or_lf_is_dropped(engine):
    status, headers, body = raw_build(engine, "crlf-cookie")
    assert status == 200
    assert [v for n, v in headers if n.lower() == "set-cookie"] == ["good=1"]
    assert not any(n.lower() == "injected" for n, _ in headers)


@pytest.mark.parametrize("mode", ["framing-append", "framing-set-headers"])
def test_framing_headers_set_by_the_handler_are_dropped_and_the_engine_frames_the_reply(engine, mode):
    status, headers, body = raw_build(engine, mode)
    assert status == 200
    assert body == b"framed by the engine"
    values = [(n.lower(), v) for n, v in headers]
    assert ("content-length", "12345") not in values
    assert not any(v == "x-handler-te" for _, v in values)
    assert not any(v == "x-handler-conn" for _, v in values)
    lengths = [v for n, v in values if n == "content-length"]
    assert lengths in ([], [str(len(body))])
    with httpx.Client(base_url=engine.url) as client:
        invocation_id = client.get("/response", params={"mode": mode}).headers["x-request-id"]
    wait_for_warning(engine, invocation_id, "content-length")
