"""The callback table of behavior.md, row by row, on the real Node.js runner."""

from __future__ import annotations

import pytest

TEXT = "text/plain; charset=utf-8"
JSON = "application/json; charset=utf-8"
XML = "text/xml; charset=utf-8"
XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>'

ROWS = {
    "none": "callback()",
    "null": "callback(null)",
    "null-null": "callback(null, null)",
    "null-undefined": "callback(null, undefined)",
    "text": "callback(null, 'hello ✓')",
    "empty-text": "callback(null, '')",
    "object": "callback(null, {a: 1, b: [true, null], c: 'ü'})",
    "array": "callback(null, [1, 'two', {three: 3}])",
    "true": "callback(null, true)",
    "false": "callback(null, false)",
    "number": "callback(null, 42.5)",
    "zero": "callback(null, 0)",
    "messaging": "{ const t = new Twilio.twiml.MessagingResponse(); t.message('hi'); callback(null, t); }",
    "voice": "{ const t = new Twilio.twiml.VoiceResponse(); t.say('hello'); callback(null, t); }",
    "fax": "{ const t = new Twilio.twiml.FaxResponse(); t.receive(); callback(null, t); }",
    "buffer": "callback(null, Buffer.from([0, 1, 2, 255, 254, 0x80, 10, 13]))",
    "uint8array": "callback(null, new Uint8Array([200, 0, 100]))",
    "response": "callback(null, new Twilio.Response().setStatusCode(418).setBody('teapot'))",
    "err-string": "callback('Something went very, very wrong.')",
    "err-error": "callback(new TypeError('bad type'))",
    "err-object": "callback({code: 42, why: 'because'})",
    "err-number": "callback(7)",
    "err-true": "callback(true)",
    "err-with-response": "callback('nope', 'ignored response')",
    "falsy-zero-err": "callback(0, 'zero is not an error')",
    "falsy-empty-err": "callback('', 'empty string is not an error')",
    "falsy-false-err": "callback(false, 'false is not an error')",
    "circular": "{ const o = {}; o.self = o; callback(null, o); }",
    "bigint": "callback(null, {n: 10n})",
}


@pytest.fixture(scope="module")
def callback_files() -> dict[str, str]:
    return {
        f"functions/{name}.js": f"exports.handler = (context, event, callback) => {{ {code}; }};\n"
        for name, code in ROWS.items()
    }


@pytest.fixture
def runner(node_runner, callback_files):
    return node_runner(callback_files)


@pytest.mark.parametrize("name", ["none", "null", "null-null", "null-undefined"])
def test_no_response_is_an_empty_200_without_content_type(runner, name) -> None:
    out = runner.invoke(name)
    assert (out.status, out.result["headers"], out.body, out.result["body_encoding"]) == (200, [], b"", "utf-8")
    assert out.done == {"type": "done", "id": out.result["id"], "clean": True, "reason": None, "log_bytes_dropped": 0}


@pytest.mark.parametrize(("name", "text"), [("text", "hello ✓"), ("empty-text", "")])
def test_string_is_text_plain(runner, name, text) -> None:
    out = runner.invoke(name)
    assert (out.status, out.result["headers"], out.text) == (200, [["Content-Type", TEXT]], text)


@pytest.mark.parametrize(("name", "value"), [
    ("object", {"a": 1, "b": [True, None], "c": "ü"}),
    ("array", [1, "two", {"three": 3}]),
    ("true", True),
    ("false", False),
    ("number", 42.5),
    ("zero", 0),
])
def test_json_values(runner, name, value) -> None:
    out = runner.invoke(name)
    assert (out.status, out.result["headers"]) == (200, [["Content-Type", JSON]])
    assert out.json() == value


@pytest.mark.parametrize(("name", "xml"), [
    ("messaging", "<Response><Message>hi</Message></Response>"),
    ("voice", "<Response><Say>hello</Say></Response>"),
    ("fax", "<Response><Receive/></Response>"),
])
def test_twiml_is_xml(runner, name, xml) -> None:
    out = runner.invoke(name)
    assert (out.status, out.result["headers"]) == (200, [["Content-Type", XML]])
    assert out.text == XML_DECL + xml


@pytest.mark.parametrize(("name", "data"), [
    ("buffer", bytes([0, 1, 2, 255, 254, 0x80, 10, 13])),
    ("uint8array", bytes([200, 0, 100])),
])
def test_bytes_are_octet_stream_byte_exact(runner, name, data) -> None:
    out = runner.invoke(name)
    assert (out.status, out.result["headers"]) == (200, [["Content-Type", "application/octet-stream"]])
    assert out.result["body_encoding"] == "base64"
    assert out.body == data


def test_large_binary_body_byte_exact(node_runner) -> None:
    """A megabyte of every byte value comes back unchanged."""
    runner = node_runner({"functions/big.js": """
exports.handler = (context, event, callback) => {
  const buf = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < buf.length; i++) buf[i] = (i * 7 + (i >> 8)) & 0xff;
  callback(null, buf);
};
"""})
    out = runner.invoke("big")
    expected = bytes(((i * 7 + (i >> 8)) & 0xFF) for i in range(1024 * 1024))
    assert out.body == expected


def test_twilio_response_passes_status_headers_body(runner) -> None:
    out = runner.invoke("response")
    assert (out.status, out.result["headers"], out.text) == (418, [["Content-Type", TEXT]], "teapot")


def test_error_string_is_text_500(runner) -> None:
    out = runner.invoke("err-string")
    assert (out.status, out.result["headers"], out.text) == (500, [["Content-Type", TEXT]], "Something went very, very wrong.")


def test_error_object_is_json_message_and_name_with_stack_in_logs(runner) -> None:
    out = runner.invoke("err-error")
    assert (out.status, out.result["headers"]) == (500, [["Content-Type", JSON]])
    assert out.json() == {"message": "bad type", "name": "TypeError"}
    assert any(m.startswith("TypeError: bad type") for m in out.messages("error"))
    assert any("err-error.js" in m for m in out.messages("error")), "stack lines are logged"


def test_error_stack_in_body_in_dev_mode(node_runner, callback_files) -> None:
    runner = node_runner(callback_files, dev_mode=True)
    body = runner.invoke("err-error").json()
    assert (body["message"], body["name"]) == ("bad type", "TypeError")
    assert body["stack"].startswith("TypeError: bad type\n") and "err-error.js" in body["stack"]


@pytest.mark.parametrize(("name", "value"), [
    ("err-object", {"code": 42, "why": "because"}),
    ("err-number", 7),
    ("err-true", True),
])
def test_other_errors_are_json_of_the_value(runner, name, value) -> None:
    out = runner.invoke(name)
    assert (out.status, out.result["headers"]) == (500, [["Content-Type", JSON]])
    assert out.json() == value


def test_error_wins_over_response(runner) -> None:
    out = runner.invoke("err-with-response")
    assert (out.status, out.text) == (500, "nope")


@pytest.mark.parametrize(("name", "text"), [
    ("falsy-zero-err", "zero is not an error"),
    ("falsy-empty-err", "empty string is not an error"),
    ("falsy-false-err", "false is not an error"),
])
def test_falsy_error_is_success(runner, name, text) -> None:
    out = runner.invoke(name)
    assert (out.status, out.text) == (200, text)


@pytest.mark.parametrize("name", ["circular", "bigint"])
def test_unserialisable_response_is_500(runner, name) -> None:
    out = runner.invoke(name)
    assert out.status == 500
    body = out.json()
    assert body["name"] == "TypeError"
    assert body["message"].startswith("cannot serialise the callback response: ")
    assert out.done["clean"] is True


def test_response_too_large(node_runner) -> None:
    runner = node_runner({
        "functions/big.js": "exports.handler = (c, e, cb) => cb(null, 'x'.repeat(Number(e.size)));\n",
        "functions/bigbin.js": "exports.handler = (c, e, cb) => cb(null, Buffer.alloc(Number(e.size), 1));\n",
    }, limits={"max_response_bytes": 1000})
    out = runner.invoke("big", {"size": 1001})
    assert out.result["error"] == "response_too_large"
    assert out.result["size"] == 1001
    assert out.result["body"] == "" and out.result["headers"] == []
    assert out.done["clean"] is True
    assert runner.invoke("bigbin", {"size": 5000}).result["size"] == 5000
    ok = runner.invoke("big", {"size": 1000})
    assert (ok.status, len(ok.body), ok.result["error"]) == (200, 1000, None)


def test_text_that_escapes_past_the_frame_travels_as_base64(node_runner) -> None:
    """Control characters escape to 6 bytes each in JSON: the body is sent base64 to fit the frame."""
    runner = node_runner({"functions/ctl.js": "exports.handler = (c, e, cb) => cb(null, '\\u0001'.repeat(300000));\n"},
                         limits={"max_frame_bytes": 1024 * 1024})
    out = runner.invoke("ctl")
    assert out.result["body_encoding"] == "base64"
    assert out.body == b"\x01" * 300000
    assert out.header("Content-Type") == TEXT


def test_default_response_too_large_is_four_mebibytes(node_runner) -> None:
    runner = node_runner({"functions/big.js": "exports.handler = (c, e, cb) => cb(null, 'y'.repeat(4 * 1024 * 1024 + 1));\n"})
    out = runner.invoke("big")
    assert (out.result["error"], out.result["size"]) == ("response_too_large", 4 * 1024 * 1024 + 1)
