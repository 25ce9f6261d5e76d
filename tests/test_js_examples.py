"""Every JavaScript sample of functions-execution.md, verbatim, in `examples/functions/js/`, gives
the documented response through the real engine.

The titled samples are the whole of their file (`examples/functions/js/<name>.js`, URL
`/js/<name>`), character for character; the untitled fragments sit verbatim inside a small wrapper.
Both are checked against the spec page itself when it is at hand (/work/shared/spec, or
$FUNCTIONS_SPEC), and always against the copies in tests/node_runner/test_samples.py.

The SMS samples run without credentials (examples/.env has no ACCOUNT_SID / AUTH_TOKEN):
context.getTwilioClient() throws and the uncaught error is the contract's 500.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import httpx
import jwt
import pytest

from tests.node_runner.test_samples import SAMPLES, SNIPPETS

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
JS_DIR = EXAMPLES / "functions" / "js"
SPEC = Path(os.environ.get("FUNCTIONS_SPEC", "/work/shared/spec/functions-execution.md"))
XML = '<?xml version="1.0" encoding="UTF-8"?>'
TEXT = "text/plain; charset=utf-8"
JSON_TYPE = "application/json; charset=utf-8"
XML_TYPE = "text/xml; charset=utf-8"

# Sample title -> file stem (the same stems as the Python versions in examples/functions/).
FILES = {
    "Handler Method Boilerplate": "handler-boilerplate",
    "Use built-in Twilio REST Helper to send an SMS Message": "send-sms",
    "Retrieve Domain from Default Environment Variables": "domain",
    "Retrieve Environment Variables": "env-vars",
    "Access webhook values from event": "webhook-reply",
    "Complete Execution with Asynchronous HTTP Request": "send-sms-async",
    "Return an Error Response": "return-error",
    "Return a Simple Successful Response": "return-empty",
    "Return a Successful Plaintext Response": "return-plaintext",
    "Return a Successful JSON Response": "return-json",
    "Return a static Messaging response to incoming text messages": "twiml-message",
    "Return a Voice response that includes Say and Play verbs": "twiml-voice",
    "Set a Status Code in a Response": "status-code",
    "Build a Plaintext Response": "response-plaintext",
    "Building a JSON Response": "response-json",
    "Set an HTTP Header in a Response": "response-redirect",
    "Set Multiple HTTP Headers in a Response": "response-headers",
}
# Untitled fragment -> the wrapper file it sits in.
FRAGMENT_FILES = ["callback-error", "callback-response", "twilio-globals", "asset-text", "twilio-response"]


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


# --- the files are the spec's samples, verbatim ------------------------------------------------


def spec_samples() -> tuple[dict[str, str], list[str]]:
    """(titled samples by title, untitled JS fragments) of the spec page, or the stored copies."""
    if not SPEC.is_file():
        return dict(SAMPLES), list(SNIPPETS)
    text = SPEC.read_text()
    titled = dict(re.findall(r'```js title="([^"]+)"[^\n]*\n(.*?)```', text, re.S))
    fragments = re.findall(r"```javascript\n(.*?)```", text, re.S)
    return titled, fragments


def test_the_stored_sample_copies_match_the_spec():
    titled, fragments = spec_samples()
    assert titled == SAMPLES
    assert fragments == SNIPPETS


def test_every_titled_sample_is_a_file_verbatim():
    titled, _ = spec_samples()
    assert set(titled) == set(FILES), "a sample of the spec has no file here"
    for title, code in titled.items():
        assert (JS_DIR / f"{FILES[title]}.js").read_text() == code, title


def test_every_fragment_is_in_a_wrapper_verbatim():
    _, fragments = spec_samples()
    wrappers = {name: (JS_DIR / f"{name}.js").read_text() for name in FRAGMENT_FILES}
    for fragment in fragments:
        assert any(fragment in text for text in wrappers.values()), fragment


def test_every_js_example_is_covered_here():
    tested = {name.removeprefix("test_").split("__")[0].replace("_", "-") for name in globals() if name.startswith("test_")}
    files = {p.stem for p in JS_DIR.glob("*.js")}
    assert files == set(FILES.values()) | set(FRAGMENT_FILES)
    assert files <= tested, f"untested examples: {sorted(files - tested)}"


# --- the documented responses ------------------------------------------------------------------


def test_handler_boilerplate__empty_200(engine):
    response = get(engine, "/js/handler-boilerplate")
    assert response.status_code == 200
    assert "content-type" not in response.headers
    assert response.content == b""


def assert_no_credentials_500(response: httpx.Response) -> None:
    assert response.status_code == 500
    assert response.headers["content-type"] == JSON_TYPE
    body = response.json()
    assert set(body) == {"message", "name"}
    assert body["name"] == "Error"
    assert "getTwilioClient" in body["message"] and "ACCOUNT_SID" in body["message"]


SMS_PARAMS = [{}, {"From": "+15095550100", "To": "+15105550101", "Body": "Ahoy"}]


@pytest.mark.parametrize("params", SMS_PARAMS)
def test_send_sms__without_credentials_is_500_from_get_twilio_client(engine, params):
    assert_no_credentials_500(get(engine, "/js/send-sms", **params))


@pytest.mark.parametrize("params", SMS_PARAMS)
def test_send_sms_async__without_credentials_is_500_from_get_twilio_client(engine, params):
    assert_no_credentials_500(get(engine, "/js/send-sms-async", **params))


def test_domain__replies_with_the_host(engine):
    response = get(engine, "/js/domain")
    assert (response.status_code, response.headers["content-type"]) == (200, TEXT)
    assert response.text == f"127.0.0.1:{engine.port}"


def test_env_vars__primary_from_env_and_secondary_fallback(engine):
    response = get(engine, "/js/env-vars")
    assert (response.status_code, response.headers["content-type"]) == (200, JSON_TYPE)
    assert response.json() == {"phone_numbers": {"primary": "+15095550100", "backup": "There is no secondary number!"}}


def test_webhook_reply__messages_my_number_with_from_and_body(engine):
    response = get(engine, "/js/webhook-reply", From="+14444444444", Body="Ahoy!")
    assert (response.status_code, response.headers["content-type"]) == (200, XML_TYPE)
    assert response.text == XML + '<Response><Message to="+15555555555">+14444444444: Ahoy!</Message></Response>'


def test_return_error__500_with_the_message(engine):
    response = get(engine, "/js/return-error")
    assert (response.status_code, response.headers["content-type"]) == (500, TEXT)
    assert response.text == "Something went very, very wrong."


def test_return_empty__200_empty(engine):
    response = get(engine, "/js/return-empty")
    assert response.status_code == 200
    assert "content-type" not in response.headers
    assert response.content == b""


def test_return_plaintext__200_text(engine):
    response = get(engine, "/js/return-plaintext")
    assert (response.status_code, response.headers["content-type"], response.text) == (200, TEXT, "This is fine")


def test_return_json__200_json(engine):
    response = get(engine, "/js/return-json")
    assert (response.status_code, response.headers["content-type"]) == (200, JSON_TYPE)
    assert response.json() == {"result": "winner winner!"}


def test_twiml_message__hello_world(engine):
    response = get(engine, "/js/twiml-message")
    assert (response.status_code, response.headers["content-type"]) == (200, XML_TYPE)
    assert response.text == XML + "<Response><Message>Hello, World!</Message></Response>"


@pytest.mark.parametrize(
    "params, who", [({"FromCity": "SEATTLE", "From": "+14444444444"}, "SEATTLE"), ({"From": "+14444444444"}, "+14444444444")]
)
def test_twiml_voice__say_and_play(engine, params, who):
    response = get(engine, "/js/twiml-voice", **params)
    assert (response.status_code, response.headers["content-type"]) == (200, XML_TYPE)
    assert response.text == (
        XML + f'<Response><Say voice="alice">Never gonna give you up, {who}</Say>'
        "<Play>https://demo.twilio.com/docs/classic.mp3</Play></Response>"
    )


def test_status_code__204(engine):
    response = get(engine, "/js/status-code")
    assert (response.status_code, response.content) == (204, b"")


def test_response_plaintext__200_text(engine):
    response = get(engine, "/js/response-plaintext")
    assert (response.status_code, response.headers["content-type"], response.text) == (200, TEXT, "This is fine")


def test_response_json__200_with_the_header_it_set(engine):
    response = get(engine, "/js/response-json")
    assert response.status_code == 200
    assert response.headers.get_list("content-type") == ["application/json"]
    assert response.json() == {"everything": "is alright"}


def test_response_redirect__301_to_twilio(engine):
    response = get(engine, "/js/response-redirect")
    assert response.status_code == 301
    assert response.headers["location"] == "https://twilio.com"
    assert response.content == b""


def test_response_headers__cors_headers(engine):
    response = get(engine, "/js/response-headers")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "example.com"
    assert response.headers["access-control-allow-methods"] == "GET,PUT,POST,DELETE,OPTIONS"
    assert response.headers["access-control-allow-headers"] == "Content-Type"
    assert response.content == b""


def test_callback_error__500_json_of_the_error(engine):
    response = get(engine, "/js/callback-error")
    assert (response.status_code, response.headers["content-type"]) == (500, JSON_TYPE)
    assert response.json() == {"message": "Something went wrong", "name": "Error"}


def test_callback_response__200_json(engine):
    response = get(engine, "/js/callback-response")
    assert (response.status_code, response.headers["content-type"]) == (200, JSON_TYPE)
    assert response.json() == {"ok": True}


def test_twilio_response__made_without_importing_twilio(engine):
    response = get(engine, "/js/twilio-response")
    assert (response.status_code, response.headers["content-type"]) == (200, TEXT)
    assert response.text == "A Twilio.Response, made without importing Twilio"


def test_asset_text__reads_and_logs_the_asset(engine):
    response = get(engine, "/js/asset-text")
    text = (EXAMPLES / "assets/my-file.txt").read_text()
    assert (response.status_code, response.headers["content-type"], response.text) == (200, TEXT, text)
    messages = handler_messages(engine, response.headers["x-request-id"])
    assert "Your file contents: " + text.rstrip("\n") in messages


def test_twilio_globals__twiml_and_an_access_token_with_a_sync_grant(engine):
    response = get(engine, "/js/twilio-globals", identity="alice")
    assert (response.status_code, response.headers["content-type"]) == (200, JSON_TYPE)
    data = response.json()
    assert data["twiml"] == XML + "<Response/>"
    claims = jwt.decode(data["token"], "placeholder-api-secret-not-a-real-one", algorithms=["HS256"], options={"verify_aud": False})
    assert claims["iss"] == "SK00000000000000000000000000000000"
    assert claims["sub"] == "AC00000000000000000000000000000000"
    assert claims["grants"] == {"identity": "alice", "data_sync": {"service_sid": "IS00000000000000000000000000000000"}}


def test_python_and_js_versions_of_a_sample_give_the_same_reply(engine):
    """The Python twins in examples/functions/ answer as their JS originals (status, type, body)."""
    for name in ("return-json", "return-plaintext", "return-error", "response-json", "twiml-message", "status-code"):
        js, py = get(engine, f"/js/{name}"), get(engine, f"/{name}")
        assert (js.status_code, js.headers.get("content-type"), js.content) == (
            py.status_code, py.headers.get("content-type"), py.content), name
