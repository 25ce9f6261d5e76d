"""Every example in `examples/` gives the response its JS original in functions-execution.md documents.

One test per sample, named after it; each asserts status, Content-Type and body (and the headers
the sample sets).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import jwt
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
XML = '<?xml version="1.0" encoding="UTF-8"?>'


@pytest.fixture(scope="module")
def engine(module_engine_factory, backend, request):
    if backend != "process":
        request.getfixturevalue("docker_available")
    return module_engine_factory(EXAMPLES, backend=backend)


def get(engine, path: str, **params: str) -> httpx.Response:
    with engine.client(follow_redirects=False) as client:
        return client.get(path, params=params)


def handler_messages(engine, invocation_id: str, timeout: float = 5) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        messages = []
        for line in engine.logs().splitlines():
            if line.startswith("{"):
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("event") == "handler_log" and record.get("invocation_id") == invocation_id:
                    messages.append(record.get("message"))
        if messages or time.monotonic() > deadline:
            return messages
        time.sleep(0.05)


def test_every_example_function_is_covered_here():
    tested = {name.removeprefix("test_").split("__")[0].replace("_", "-") for name in globals() if name.startswith("test_")}
    files = {p.name.removesuffix(".py") for p in (EXAMPLES / "functions").glob("*.py")}
    assert files <= tested, f"untested examples: {sorted(files - tested)}"


def test_handler_boilerplate__empty_200(engine):
    response = get(engine, "/handler-boilerplate")
    assert response.status_code == 200
    assert "content-type" not in response.headers
    assert response.content == b""


def test_send_sms__without_credentials_is_500(engine):
    """No ACCOUNT_SID/AUTH_TOKEN in examples/.env: get_twilio_client() raises, uncaught → 500."""
    response = get(engine, "/send-sms")
    assert response.status_code == 500
    assert response.headers["content-type"].split(";")[0] == "application/json"
    assert set(response.json()) == {"message", "name"}


def test_send_sms_async__without_credentials_is_500(engine):
    response = get(engine, "/send-sms-async", From="+15095550100", Body="Ahoy")
    assert response.status_code == 500
    assert response.headers["content-type"].split(";")[0] == "application/json"
    assert set(response.json()) == {"message", "name"}


def test_domain__replies_with_the_host(engine):
    response = get(engine, "/domain")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == f"127.0.0.1:{engine.port}"


def test_env_vars__primary_from_env_and_secondary_fallback(engine):
    response = get(engine, "/env-vars")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json() == {"phone_numbers": {"primary": "+15095550100", "backup": "There is no secondary number!"}}


def test_webhook_reply__messages_my_number_with_from_and_body(engine):
    response = get(engine, "/webhook-reply", From="+14444444444", Body="Ahoy!")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    assert response.text == XML + '<Response><Message to="+15555555555">+14444444444: Ahoy!</Message></Response>'


def test_return_error__500_with_the_message(engine):
    response = get(engine, "/return-error")
    assert response.status_code == 500
    assert response.headers["content-type"].split(";")[0] == "text/plain"
    assert response.text == "Something went very, very wrong."


def test_return_empty__200_empty(engine):
    response = get(engine, "/return-empty")
    assert response.status_code == 200
    assert "content-type" not in response.headers
    assert response.content == b""


def test_return_plaintext__200_text(engine):
    response = get(engine, "/return-plaintext")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == "This is fine"


def test_return_json__200_json(engine):
    response = get(engine, "/return-json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    assert response.json() == {"result": "winner winner!"}


def test_twiml_message__hello_world(engine):
    response = get(engine, "/twiml-message")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    assert response.text == XML + "<Response><Message>Hello, World!</Message></Response>"


@pytest.mark.parametrize(
    "params, who", [({"FromCity": "SEATTLE", "From": "+14444444444"}, "SEATTLE"), ({"From": "+14444444444"}, "+14444444444")]
)
def test_twiml_voice__say_and_play(engine, params, who):
    response = get(engine, "/twiml-voice", **params)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    assert response.text == (
        XML + f'<Response><Say voice="alice">Never gonna give you up, {who}</Say>'
        "<Play>https://demo.twilio.com/docs/classic.mp3</Play></Response>"
    )


def test_status_code__204(engine):
    response = get(engine, "/status-code")
    assert response.status_code == 204
    assert response.content == b""


def test_response_plaintext__200_text(engine):
    response = get(engine, "/response-plaintext")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == "This is fine"


def test_response_json__200_with_the_header_it_set(engine):
    response = get(engine, "/response-json")
    assert response.status_code == 200
    assert response.headers.get_list("content-type") == ["application/json"]
    assert response.json() == {"everything": "is alright"}


def test_response_redirect__301_to_twilio(engine):
    response = get(engine, "/response-redirect")
    assert response.status_code == 301
    assert response.headers["location"] == "https://twilio.com"
    assert response.content == b""


def test_response_headers__cors_headers(engine):
    response = get(engine, "/response-headers")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "example.com"
    assert response.headers["access-control-allow-methods"] == "GET,PUT,POST,DELETE,OPTIONS"
    assert response.headers["access-control-allow-headers"] == "Content-Type"
    assert response.content == b""


def test_asset_text__reads_and_logs_the_asset(engine):
    response = get(engine, "/asset-text")
    text = (EXAMPLES / "assets/my-file.txt").read_text()
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == text
    messages = handler_messages(engine, response.headers["x-request-id"])
    assert "Your file contents: " + text.rstrip("\n") in messages or "Your file contents: " + text in messages


def test_twilio_globals__twiml_and_an_access_token_with_a_sync_grant(engine):
    response = get(engine, "/twilio-globals", identity="alice")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    data = response.json()
    assert data["twiml"] == XML + "<Response />"
    claims = jwt.decode(data["token"], "placeholder-api-secret-not-a-real-one", algorithms=["HS256"], options={"verify_aud": False})
    assert claims["iss"] == "SK00000000000000000000000000000000"
    assert claims["sub"] == "AC00000000000000000000000000000000"
    assert claims["grants"] == {"identity": "alice", "data_sync": {"service_sid": "IS00000000000000000000000000000000"}}


def test_index_html__served_at_root(engine):
    response = get(engine, "/")
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == "text/html"
    assert response.content == (EXAMPLES / "assets/index.html").read_bytes()


def test_my_file__served_as_a_public_asset(engine):
    response = get(engine, "/my-file.txt")
    assert response.status_code == 200
    assert response.content == (EXAMPLES / "assets/my-file.txt").read_bytes()
