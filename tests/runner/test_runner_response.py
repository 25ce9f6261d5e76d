"""Twilio.Response rules (behavior.md "Twilio.Response"), on the class itself."""

from __future__ import annotations

import pytest
from twilio.twiml.voice_response import VoiceResponse

from functions_runtime.reply import is_twiml
from functions_runtime.response import Response


def test_defaults_are_200_no_headers_empty_body() -> None:
    reply = Response().to_reply()
    assert (reply.status, reply.headers, reply.body) == (200, [], "")


def test_constructor_accepts_a_js_style_options_dict_and_keywords() -> None:
    r = Response({"statusCode": 404, "headers": {"X-A": "1"}, "body": "nope"})
    assert (r.status_code, r.statusCode, r.headers, r.body) == (404, 404, {"X-A": "1"}, "nope")
    r = Response(status_code=201, headers={"X-B": ["1", "2"]}, body={"ok": True})
    assert r.to_reply().headers == [("X-B", "1"), ("X-B", "2"), ("Content-Type", "application/json")]
    assert Response(statusCode=204).status_code == 204


def test_every_mutator_returns_the_response_and_camel_case_aliases_exist() -> None:
    r = Response()
    assert r.setStatusCode(202) is r and r.set_status_code(202) is r
    assert r.setBody("x") is r and r.set_body("x") is r
    assert r.appendHeader("A", "1") is r and r.append_header("B", "1") is r
    assert r.setHeaders({}) is r and r.set_headers({}) is r
    assert r.setCookie("a", "1") is r and r.set_cookie("a", "1") is r
    assert r.removeCookie("a") is r and r.remove_cookie("a") is r


def test_append_header_on_an_existing_name_any_case_makes_it_multi_valued() -> None:
    r = Response().append_header("X-Tag", "a").append_header("x-tag", "b").append_header("X-TAG", ["c", "d"])
    assert r.to_reply().headers == [("X-Tag", "a"), ("X-Tag", "b"), ("X-Tag", "c"), ("X-Tag", "d")]
    assert r.headers == {"X-Tag": ["a", "b", "c", "d"]}


def test_append_header_with_an_object_value_is_an_error() -> None:
    with pytest.raises(TypeError, match="dict"):
        Response().append_header("X", {"a": 1})


def test_header_numbers_become_strings() -> None:
    r = Response().append_header("N", 5).append_header("F", 1.5).append_header("I", 2.0).append_header("B", True)
    assert r.to_reply().headers == [("N", "5"), ("F", "1.5"), ("I", "2"), ("B", "true")]


def test_set_headers_replaces_all_headers_including_cookies() -> None:
    r = Response().append_header("Old", "1").set_cookie("s", "1")
    r.set_headers({"New": "2", "Multi": ["a", "b"]})
    assert r.to_reply().headers == [("New", "2"), ("Multi", "a"), ("Multi", "b")]
    with pytest.raises(TypeError):
        r.set_headers([("A", "1")])  # type: ignore[arg-type]


def test_set_cookie_appends_one_set_cookie_line_each_with_attributes() -> None:
    r = Response().set_cookie("a", "1").set_cookie("b", "2", ["Path=/", "HttpOnly"])
    assert r.to_reply().headers == [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2;Path=/;HttpOnly")]


def test_remove_cookie_drops_earlier_ones_and_expires_it() -> None:
    r = Response().set_cookie("a", "1").set_cookie("ab", "2").set_cookie("a", "3", ["Secure"]).remove_cookie("a")
    assert r.to_reply().headers == [("Set-Cookie", "ab=2"), ("Set-Cookie", "a=;Max-Age=0")]


@pytest.mark.parametrize("body, expected, content_type", [
    ({"a": [1]}, '{"a":[1]}', "application/json"),
    ([1, 2], "[1,2]", "application/json"),
    ("text", "text", "text/plain; charset=utf-8"),
    (b"\x00raw", b"\x00raw", "application/octet-stream"),
    (None, "", None),
])
def test_body_rendering_and_default_content_type(body: object, expected: object, content_type: str | None) -> None:
    reply = Response().set_body(body).to_reply()
    assert reply.body == expected
    assert [v for n, v in reply.headers if n == "Content-Type"] == ([content_type] if content_type else [])


def test_an_explicit_content_type_is_kept() -> None:
    reply = Response().append_header("content-type", "application/vnd.x+json").set_body({"a": 1}).to_reply()
    assert reply.headers == [("content-type", "application/vnd.x+json")]


def test_twiml_body_is_rendered_as_xml() -> None:
    twiml = VoiceResponse()
    twiml.say("hi")
    reply = Response().set_body(twiml).to_reply(is_twiml)
    assert reply.body.startswith('<?xml version="1.0" encoding="UTF-8"?><Response><Say>hi</Say>')
    assert ("Content-Type", "text/xml; charset=utf-8") in reply.headers


@pytest.mark.parametrize("code", [0, 99, 1000, "abc", None, True, 200.5])
def test_invalid_status_codes_are_rejected(code: object) -> None:
    with pytest.raises(ValueError):
        Response().set_status_code(code)  # type: ignore[arg-type]


def test_crlf_and_content_length_are_passed_through_for_the_engine_to_filter() -> None:
    r = Response().append_header("X-Evil", "a\r\nb").append_header("Content-Length", "3")
    assert r.to_reply().headers == [("X-Evil", "a\r\nb"), ("Content-Length", "3")]
