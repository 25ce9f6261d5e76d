"""Conformance: the "HTTP in" table of behavior.md, and the `X-Twilio-Signature` rule.

Whether a function ran is read from the engine's logs: the test project's functions print
`RAN <function> token=<token>` with the `token` query parameter the test chose.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import time
import uuid
from pathlib import Path

import httpx
import pytest
from twilio.request_validator import RequestValidator

PROJECTS = Path(__file__).resolve().parent / "projects"
HTTP = PROJECTS / "http"
AUTH_TOKEN = "http-test-auth-token-0b7e"  # tests/projects/http/.env
MiB = 1024 * 1024


def _start(module_engine_factory, backend, request, **kwargs):
    if backend != "process":
        request.getfixturevalue("docker_available")
    return module_engine_factory(HTTP, backend=backend, **kwargs)


@pytest.fixture(scope="module")
def engine(module_engine_factory, backend, request):
    """Default limits: 1 MiB bodies, 90 headers, 15 kB of headers; no proxy."""
    return _start(module_engine_factory, backend, request)


@pytest.fixture(scope="module")
def small_body_engine(module_engine_factory, backend, request):
    return _start(module_engine_factory, backend, request, config={"max_body_bytes": 1024})


@pytest.fixture(scope="module")
def proxy_engine(module_engine_factory, backend, request):
    return _start(module_engine_factory, backend, request, args=["--behind-proxy"])


# --- helpers ---------------------------------------------------------------------------------


def new_token() -> str:
    return uuid.uuid4().hex[:12]


def wait_ran(engine, function: str, token: str, timeout: float = 5) -> None:
    marker = f"RAN {function} token={token}"
    deadline = time.monotonic() + timeout
    while marker not in engine.logs():
        if time.monotonic() > deadline:
            raise AssertionError(f"{function} did not run for token {token}")
        time.sleep(0.05)


def assert_not_run(engine, function: str, token: str) -> None:
    time.sleep(0.5)  # handler output reaches the engine's log after the reply; give it time
    assert f"RAN {function} token={token}" not in engine.logs(), f"{function} ran for token {token}"


def raw_request(engine, method: str, target: str, headers: list[tuple[str, str]] | None = None, body: bytes | None = None):
    """Exactly the header lines given (plus Host); returns status, header pairs, body."""
    conn = http.client.HTTPConnection("127.0.0.1", engine.port, timeout=30)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", f"127.0.0.1:{engine.port}")
        for name, value in headers or []:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.getheaders(), resp.read()
    finally:
        conn.close()


def sign(url: str, params: dict[str, str] | None = None) -> str:
    return RequestValidator(AUTH_TOKEN).compute_signature(url, params or {})


def json_body_of_size(size: int) -> bytes:
    body = b'{"pad": "' + b"x" * (size - len(b'{"pad": ""}')) + b'"}'
    assert len(body) == size
    return body


# --- methods ---------------------------------------------------------------------------------


def test_get_reaches_the_function(engine):
    token = new_token()
    with engine.client() as client:
        response = client.get("/echo", params={"token": token})
    assert response.status_code == 200
    assert response.json()["event"] == {"token": token}
    wait_ran(engine, "echo", token)


def test_post_form_and_post_json_reach_the_function(engine):
    with engine.client() as client:
        form = client.post("/echo", data={"token": "t-form", "a": "1"})
        body = client.post("/echo", json={"token": "t-json", "a": 1})
    assert form.status_code == 200 and form.json()["event"] == {"token": "t-form", "a": "1"}
    assert body.status_code == 200 and body.json()["event"] == {"token": "t-json", "a": 1}


def test_every_function_response_carries_a_request_id(engine):
    with engine.client() as client:
        ids = [client.get("/echo").headers.get("x-request-id") for _ in range(3)]
    assert all(ids) and len(set(ids)) == 3


def test_options_is_answered_by_the_engine_with_cors_preflight_and_the_function_does_not_run(engine):
    token = new_token()
    with engine.client() as client:
        response = client.options(
            "/echo",
            params={"token": token},
            headers={"Origin": "https://example.com", "Access-Control-Request-Method": "POST"},
        )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
    assert response.headers["access-control-allow-headers"] == "*"
    assert response.content == b""
    assert_not_run(engine, "echo", token)


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "HEAD", "TRACE"])
def test_other_methods_get_405_with_allow_and_the_function_does_not_run(engine, method):
    token = new_token()
    with engine.client() as client:
        response = client.request(method, "/echo", params={"token": token})
    assert response.status_code == 405
    allowed = {part.strip() for part in response.headers["allow"].split(",")}
    assert allowed == {"GET", "POST", "OPTIONS"}
    assert_not_run(engine, "echo", token)


@pytest.mark.parametrize("path", ["/nope", "/echo/extra", "/ech", "/echo.py", "/functions/echo"])
def test_unknown_path_is_404(engine, path):
    with engine.client() as client:
        assert client.get(path).status_code == 404
        assert client.post(path, data={"a": "1"}).status_code == 404


# --- body size -------------------------------------------------------------------------------


def test_body_of_exactly_1_mib_is_accepted(engine):
    with engine.client() as client:
        response = client.post(
            "/echo", params={"token": "exact"}, content=json_body_of_size(MiB), headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 200
    assert len(response.json()["event"]["pad"]) == MiB - len(b'{"pad": ""}')


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded", "text/plain"])
def test_body_over_1_mib_is_413_and_the_function_does_not_run(engine, content_type):
    token = new_token()
    body = json_body_of_size(MiB + 1) if content_type == "application/json" else b"a=" + b"x" * (MiB - 1)
    with engine.client() as client:
        response = client.post("/echo", params={"token": token}, content=body, headers={"Content-Type": content_type})
    assert response.status_code == 413
    assert_not_run(engine, "echo", token)


def test_chunked_body_over_1_mib_is_413_and_the_function_does_not_run(engine):
    """No Content-Length to trust: the limit is enforced while reading."""
    token = new_token()

    def chunks():
        for _ in range(17):
            yield b"x" * 65536  # 17 × 64 KiB > 1 MiB

    with engine.client() as client:
        response = client.post(
            "/echo", params={"token": token}, content=chunks(), headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
    assert response.status_code == 413
    assert_not_run(engine, "echo", token)


def test_body_limit_is_configurable(small_body_engine):
    token = new_token()
    with small_body_engine.client() as client:
        ok = client.post("/echo", params={"token": "at-limit"}, content=json_body_of_size(1024), headers={"Content-Type": "application/json"})
        over = client.post("/echo", params={"token": token}, content=json_body_of_size(1025), headers={"Content-Type": "application/json"})
    assert ok.status_code == 200
    assert over.status_code == 413
    assert_not_run(small_body_engine, "echo", token)


# --- header limits ---------------------------------------------------------------------------


def test_90_request_headers_are_accepted(engine):
    headers = [(f"X-Filler-{i}", "v") for i in range(89)]  # + Host = 90
    status, _, _ = raw_request(engine, "GET", "/echo?token=h90", headers)
    assert status == 200


def test_more_than_90_request_headers_get_431_and_the_function_does_not_run(engine):
    token = new_token()
    headers = [(f"X-Filler-{i}", "v") for i in range(90)]  # + Host = 91
    status, _, _ = raw_request(engine, "GET", f"/echo?token={token}", headers)
    assert status == 431
    assert_not_run(engine, "echo", token)


def test_12_kb_of_headers_are_accepted_even_in_one_header(engine):
    many = [(f"X-Big-{i}", "v" * 2000) for i in range(6)]
    assert raw_request(engine, "GET", "/echo?token=h12k", many)[0] == 200
    one = [("X-Big", "v" * 12_000)]
    assert raw_request(engine, "GET", "/echo?token=h12k1", one)[0] == 200


@pytest.mark.parametrize(
    "headers",
    [[(f"X-Big-{i}", "v" * 2000) for i in range(8)], [("X-Big", "v" * 16_000)]],
    ids=["8x2kB", "1x16kB"],
)
def test_over_15_kb_of_headers_get_431_and_the_function_does_not_run(engine, headers):
    token = new_token()
    status, _, _ = raw_request(engine, "GET", f"/echo?token={token}", headers)
    assert status == 431
    assert_not_run(engine, "echo", token)


# --- malformed JSON --------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b'{"a": ', b"{not json}", b'{"a": 1,}', b"\xff\xfe{}"], ids=["truncated", "garbage", "trailing-comma", "bad-utf8"])
@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
def test_malformed_json_body_is_400_naming_the_problem_and_the_function_does_not_run(engine, body, content_type):
    token = new_token()
    with engine.client() as client:
        response = client.post("/echo", params={"token": token}, content=body, headers={"Content-Type": content_type})
    assert response.status_code == 400
    assert "json" in response.text.lower()
    assert_not_run(engine, "echo", token)


# --- visibility ------------------------------------------------------------------------------


def test_private_function_url_is_404_and_it_does_not_run(engine):
    token = new_token()
    with engine.client() as client:
        assert client.get("/hidden", params={"token": token}).status_code == 404
        assert client.post("/hidden", params={"token": token}, data={"a": "1"}).status_code == 404
    assert_not_run(engine, "hidden", token)


def test_protected_function_without_signature_is_403_and_does_not_run(engine):
    token = new_token()
    with engine.client() as client:
        assert client.get("/secret", params={"token": token}).status_code == 403
        assert client.post("/secret", params={"token": token}, data={"a": "1"}).status_code == 403
    assert_not_run(engine, "secret", token)


def test_protected_function_with_invalid_signature_is_403_and_does_not_run(engine):
    token = new_token()
    url = f"{engine.url}/secret?token={token}"
    wrong_key = RequestValidator("not-the-auth-token").compute_signature(url, {})
    with engine.client() as client:
        for signature in ["", "garbage", wrong_key, sign(url)[:-4] + "AAA="]:
            response = client.get("/secret", params={"token": token}, headers={"X-Twilio-Signature": signature})
            assert response.status_code == 403, signature
    assert_not_run(engine, "secret", token)


def test_signed_get_runs_the_protected_function(engine):
    token = new_token()
    url = f"{engine.url}/secret?token={token}&b=2"
    with engine.client() as client:
        response = client.get(url, headers={"X-Twilio-Signature": sign(url)})
    assert response.status_code == 200
    assert response.json() == {"signed": "ok", "event": {"token": token, "b": "2"}}


def test_signed_form_post_covers_url_then_sorted_name_value_pairs(engine):
    token = new_token()
    url = f"{engine.url}/secret?token={token}"
    params = {"To": "+15555555555", "From": "+14444444444", "Body": "Ahoy!", "AccountSid": "AC" + "0" * 32}
    with engine.client() as client:
        response = client.post(url, data=params, headers={"X-Twilio-Signature": sign(url, params)})
    assert response.status_code == 200
    assert response.json() == {"signed": "ok", "event": {"token": token, **params}}


def test_form_post_with_a_tampered_parameter_is_403(engine):
    token = new_token()
    url = f"{engine.url}/secret?token={token}"
    params = {"Body": "Ahoy!", "From": "+14444444444"}
    signature = sign(url, params)
    with engine.client() as client:
        tampered = client.post(url, data={**params, "Body": "Pay me"}, headers={"X-Twilio-Signature": signature})
        added = client.post(url, data={**params, "Extra": "1"}, headers={"X-Twilio-Signature": signature})
        url_only = client.post(url, data=params, headers={"X-Twilio-Signature": sign(url)})
    assert (tampered.status_code, added.status_code, url_only.status_code) == (403, 403, 403)
    assert_not_run(engine, "secret", token)


def test_signature_for_another_url_is_403(engine):
    token = new_token()
    with engine.client() as client:
        for signed_url in [f"{engine.url}/secret", f"{engine.url}/echo?token={token}", f"https://127.0.0.1:{engine.port}/secret?token={token}"]:
            response = client.get("/secret", params={"token": token}, headers={"X-Twilio-Signature": sign(signed_url)})
            assert response.status_code == 403, signed_url
    assert_not_run(engine, "secret", token)


def test_signed_json_body_uses_body_sha256_in_the_url(engine):
    token = new_token()
    raw = json.dumps({"token": token, "color": "orange"}).encode()
    url = f"{engine.url}/secret?bodySHA256={hashlib.sha256(raw).hexdigest()}"
    with engine.client() as client:
        response = client.post(url, content=raw, headers={"Content-Type": "application/json", "X-Twilio-Signature": sign(url)})
    assert response.status_code == 200
    event = response.json()["event"]
    assert event["token"] == token and event["color"] == "orange"


def test_json_body_not_matching_body_sha256_is_403(engine):
    token = new_token()
    signed_body = json.dumps({"token": token, "amount": "1"}).encode()
    sent_body = json.dumps({"token": token, "amount": "1000"}).encode()
    url = f"{engine.url}/secret?bodySHA256={hashlib.sha256(signed_body).hexdigest()}"
    with engine.client() as client:
        response = client.post(url, content=sent_body, headers={"Content-Type": "application/json", "X-Twilio-Signature": sign(url)})
    assert response.status_code == 403
    assert_not_run(engine, "secret", token)


def test_forwarded_headers_are_ignored_unless_behind_a_proxy(engine):
    token = new_token()
    public_url = f"https://public.example.com/secret?token={token}"
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "public.example.com"}
    with engine.client() as client:
        response = client.get("/secret", params={"token": token}, headers={**forwarded, "X-Twilio-Signature": sign(public_url)})
    assert response.status_code == 403
    assert_not_run(engine, "secret", token)


def test_behind_a_proxy_the_signature_covers_the_forwarded_url(proxy_engine):
    token = new_token()
    public_url = f"https://public.example.com/secret?token={token}"
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "public.example.com"}
    with proxy_engine.client() as client:
        ok = client.get("/secret", params={"token": token}, headers={**forwarded, "X-Twilio-Signature": sign(public_url)})
        local_url = f"{proxy_engine.url}/secret?token={token}"
        local = client.get("/secret", params={"token": token}, headers={**forwarded, "X-Twilio-Signature": sign(local_url)})
    assert ok.status_code == 200
    assert local.status_code == 403
