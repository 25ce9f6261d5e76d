"""The callback table (behavior.md) as pure functions: truthiness, JSON and reply building."""

from __future__ import annotations

import json
import math

import pytest
from twilio.twiml.messaging_response import MessagingResponse

from functions_runtime.jsvalues import js_truthy, to_json
from functions_runtime.reply import build_reply
from functions_runtime.response import Response


@pytest.mark.parametrize("value", [None, False, 0, 0.0, -0.0, "", math.nan])
def test_js_falsy_values(value: object) -> None:
    assert js_truthy(value) is False


@pytest.mark.parametrize("value", [True, 1, -1, 0.5, "0", " ", {}, [], b"", object(), Exception("x"), math.inf])
def test_js_truthy_values(value: object) -> None:
    assert js_truthy(value) is True


def test_to_json_is_compact_keeps_unicode_and_nulls_non_finite_floats() -> None:
    assert to_json({"a": [1, "é"], "b": None}) == '{"a":[1,"é"],"b":null}'
    assert to_json([math.nan, math.inf, -math.inf, 1.5]) == "[null,null,null,1.5]"
    assert to_json((1, 2)) == "[1,2]"
    with pytest.raises(TypeError, match="set"):
        to_json({1, 2})
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError):
        to_json(loop)


def content_type(reply) -> list[str]:  # type: ignore[no-untyped-def]
    return [v for n, v in reply.headers if n.lower() == "content-type"]


@pytest.mark.parametrize("error, response", [(None, None), (False, None), (0, None), ("", None), (math.nan, None)])
def test_falsy_error_and_no_response_is_200_without_content_type(error: object, response: object) -> None:
    reply = build_reply(error, response, dev_mode=False)
    assert (reply.status, reply.headers, reply.body) == (200, [], "")


def test_string_response_is_text_plain() -> None:
    reply = build_reply(None, "This is fine", False)
    assert (reply.status, content_type(reply), reply.body) == (200, ["text/plain; charset=utf-8"], "This is fine")


@pytest.mark.parametrize("value, body", [({"a": 1}, '{"a":1}'), ([1, "x"], '[1,"x"]'), (True, "true"),
                                         (False, "false"), (0, "0"), (2.5, "2.5"), ({}, "{}")])
def test_json_responses(value: object, body: str) -> None:
    reply = build_reply(None, value, False)
    assert (reply.status, content_type(reply), reply.body) == (200, ["application/json; charset=utf-8"], body)


def test_twiml_response_is_xml_with_declaration() -> None:
    twiml = MessagingResponse()
    twiml.message("hi")
    reply = build_reply(None, twiml, False)
    assert content_type(reply) == ["text/xml; charset=utf-8"]
    assert reply.body == '<?xml version="1.0" encoding="UTF-8"?><Response><Message>hi</Message></Response>'


@pytest.mark.parametrize("value", [b"\x00\x01", bytearray(b"\x00\x01"), memoryview(b"\x00\x01")])
def test_bytes_response_is_octet_stream(value: object) -> None:
    reply = build_reply(None, value, False)
    assert (content_type(reply), reply.body) == (["application/octet-stream"], b"\x00\x01")


def test_unserialisable_response_is_500_naming_the_type() -> None:
    reply = build_reply(None, {1, 2}, False)
    assert reply.status == 500 and "set" in json.loads(reply.body)["message"]
    reply = build_reply(None, object(), False)
    assert reply.status == 500 and "object" in json.loads(reply.body)["message"]


def test_string_error_is_500_text() -> None:
    reply = build_reply("Something went very, very wrong.", "ignored", False)
    assert (reply.status, content_type(reply), reply.body) == (
        500, ["text/plain; charset=utf-8"], "Something went very, very wrong.")


def test_exception_error_is_500_json_message_and_name_without_stack() -> None:
    reply = build_reply(ValueError("bad"), None, False)
    assert (reply.status, content_type(reply)) == (500, ["application/json; charset=utf-8"])
    assert json.loads(reply.body) == {"message": "bad", "name": "ValueError"}


def test_exception_error_carries_stack_in_dev_mode() -> None:
    try:
        raise KeyError("k")
    except KeyError as exc:
        reply = build_reply(exc, None, True)
    body = json.loads(reply.body)
    assert body["name"] == "KeyError" and "Traceback" in body["stack"]


@pytest.mark.parametrize("error, body", [({"code": 1}, '{"code":1}'), ([], "[]"), ({}, "{}"), (42, "42"),
                                         (True, "true")])
def test_other_truthy_errors_are_500_json_of_the_value(error: object, body: str) -> None:
    reply = build_reply(error, None, False)
    assert (reply.status, content_type(reply), reply.body) == (500, ["application/json; charset=utf-8"], body)


def test_twilio_response_in_callback_uses_its_status_headers_body() -> None:
    reply = build_reply(None, Response().set_status_code(201).append_header("X", "1").set_body({"a": 1}), False)
    assert reply.status == 201 and reply.headers == [("X", "1"), ("Content-Type", "application/json")]
    assert reply.body == '{"a":1}'
