"""Conformance: the `event` section of behavior.md.

Query string, form body and JSON body merge into one object (body wins), repeated keys become
lists, `event.request` carries filtered lowercase headers and decoded cookies, and a parameter
literally named `request` replaces it.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest

PROJECTS = Path(__file__).resolve().parent / "projects"

DROPPED_HEADERS = [
    ("Connection", "close"),
    ("Via", "1.1 some-proxy"),
    ("Referer", "https://example.com/page"),
    ("Upgrade", "h2c"),
    ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
    ("Proxy-Connection", "keep-alive"),
    ("Proxy-Anything", "x"),
    ("X-Forwarded-For", "203.0.113.7"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Host", "public.example.com"),
    ("X-Forwarded-Port", "443"),
    ("X-Real-IP", "203.0.113.7"),
    ("Trailer", "Expires"),
    ("X-Amz-Date", "20240101T000000Z"),
    ("X-Amzn-Trace-Id", "Root=1-00000000-000000000000000000000000"),
    ("X-Amz-Cf-Id", "abc"),
    ("X-Accel-Buffering", "no"),
    ("X-Accel-Redirect", "/internal"),
]


@pytest.fixture(scope="module")
def engine(module_engine_factory, backend, request):
    if backend != "process":
        request.getfixturevalue("docker_available")
    return module_engine_factory(PROJECTS / "event", backend=backend)


def raw_request(engine, method: str, target: str, headers: list[tuple[str, str]], body: bytes | None = None, chunked: bool = False):
    """Exactly the header lines given (plus Host); returns status and decoded JSON body."""
    conn = http.client.HTTPConnection("127.0.0.1", engine.port, timeout=30)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", f"127.0.0.1:{engine.port}")
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None and not chunked:
            conn.putheader("Content-Length", str(len(body)))
        if chunked:
            conn.endheaders(iter([body]), encode_chunked=True)
        else:
            conn.endheaders(body)
        resp = conn.getresponse()
        data = resp.read()
        assert resp.status == 200, data
        return json.loads(data)
    finally:
        conn.close()


def params_of(event: dict) -> dict:
    return {key: value for key, value in event.items() if key != "request"}


# --- merging ---------------------------------------------------------------------------------


def test_query_parameters_become_the_event(engine):
    """The `age=42&firstName=Rick` example of functions-execution.md."""
    with engine.client() as client:
        event = client.get("/echo?age=42&firstName=Rick").json()
    assert params_of(event) == {"age": "42", "firstName": "Rick"}
    assert set(event["request"]) == {"headers", "cookies"}


def test_json_body_merges_with_query_and_body_keys_win(engine):
    """The `color: orange` example, plus `age` in both parts: the JSON body's value wins."""
    with engine.client() as client:
        event = client.post("/echo?age=42&firstName=Rick", json={"color": "orange", "age": "43"}).json()
    assert params_of(event) == {"age": "43", "firstName": "Rick", "color": "orange"}


def test_form_body_merges_with_query_and_body_keys_win(engine):
    with engine.client() as client:
        event = client.post("/echo?a=query&b=query", data={"a": "form", "c": "form"}).json()
    assert params_of(event) == {"a": "form", "b": "query", "c": "form"}


def test_body_key_replaces_a_repeated_query_key_entirely(engine):
    with engine.client() as client:
        form = client.post("/echo?a=1&a=2", data={"a": "3"}).json()
        body = client.post("/echo?a=1&a=2", json={"a": "3"}).json()
    assert params_of(form) == {"a": "3"}
    assert params_of(body) == {"a": "3"}


def test_json_values_keep_their_json_types_and_nesting(engine):
    payload = {"n": 5, "f": 1.5, "t": True, "z": None, "o": {"x": [1, "2", None, False]}, "s": "text"}
    with engine.client() as client:
        event = client.post("/echo", json=payload).json()
    assert params_of(event) == payload


def test_query_and_form_values_stay_strings_as_sent(engine):
    with engine.client() as client:
        query = client.get("/types?n=42&f=1.5&t=true&e=").json()
        form = client.post("/types", data={"n": "42", "t": "false", "e": ""}).json()
        values = client.get("/echo?n=42&f=1.5&t=true&e=").json()
    assert query == {"n": "str", "f": "str", "t": "str", "e": "str", "request": "dict"}
    assert form == {"n": "str", "t": "str", "e": "str", "request": "dict"}
    assert params_of(values) == {"n": "42", "f": "1.5", "t": "true", "e": ""}


def test_query_and_form_values_are_percent_decoded(engine):
    with engine.client() as client:
        query = client.get("/echo?name=J%C3%BCrgen&plus=a+b&amp=%26&eq=a%3Db").json()
        form = client.post("/echo", content=b"name=J%C3%BCrgen&plus=a+b&amp=%26",
                           headers={"Content-Type": "application/x-www-form-urlencoded"}).json()
    assert params_of(query) == {"name": "Jürgen", "plus": "a b", "amp": "&", "eq": "a=b"}
    assert params_of(form) == {"name": "Jürgen", "plus": "a b", "amp": "&"}


def test_repeated_query_key_becomes_a_list_in_arrival_order(engine):
    with engine.client() as client:
        event = client.get("/echo?a=3&b=x&a=1&a=2").json()
    assert params_of(event) == {"a": ["3", "1", "2"], "b": "x"}


def test_repeated_form_key_becomes_a_list_in_arrival_order(engine):
    with engine.client() as client:
        event = client.post("/echo", content=b"a=3&b=x&a=1&a=2",
                            headers={"Content-Type": "application/x-www-form-urlencoded"}).json()
    assert params_of(event) == {"a": ["3", "1", "2"], "b": "x"}


def test_form_content_type_with_charset_is_still_a_form(engine):
    with engine.client() as client:
        event = client.post("/echo", content=b"a=1",
                            headers={"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"}).json()
    assert params_of(event) == {"a": "1"}


# --- request.headers -------------------------------------------------------------------------


def test_headers_are_lowercased_and_the_listed_ones_dropped(engine):
    sent = [("X-One", "1"), ("x-TWO", "Two Words"), *DROPPED_HEADERS]
    event = raw_request(engine, "GET", "/echo", sent)
    assert event["request"]["headers"] == {"x-one": "1", "x-two": "Two Words"}


def test_transfer_encoding_and_expect_are_dropped(engine):
    sent = [("Content-Type", "application/x-www-form-urlencoded"), ("Transfer-Encoding", "chunked"),
            ("Expect", "100-continue"), ("X-One", "1")]
    event = raw_request(engine, "POST", "/echo", sent, body=b"a=1", chunked=True)
    assert params_of(event) == {"a": "1"}
    assert event["request"]["headers"] == {"content-type": "application/x-www-form-urlencoded", "x-one": "1"}


def test_ordinary_headers_are_kept(engine):
    with engine.client() as client:
        event = client.get("/echo", headers={"User-Agent": "conformance/1", "Accept": "text/xml", "X-Twilio-Signature": "abc"}).json()
    headers = event["request"]["headers"]
    assert headers["user-agent"] == "conformance/1"
    assert headers["accept"] == "text/xml"
    assert headers["x-twilio-signature"] == "abc"
    assert "host" not in headers and "connection" not in headers


def test_repeated_header_becomes_a_list_in_arrival_order(engine):
    sent = [("X-Multi", "a"), ("X-Other", "o"), ("x-multi", "b"), ("X-MULTI", "c")]
    event = raw_request(engine, "GET", "/echo", sent)
    assert event["request"]["headers"] == {"x-multi": ["a", "b", "c"], "x-other": "o"}


# --- request.cookies -------------------------------------------------------------------------


def test_cookies_are_parsed_url_decoded_and_the_first_occurrence_wins(engine):
    cookie = "a=1; b=hello%20world; a=2; json=%7B%22k%22%3A1%7D; empty="
    event = raw_request(engine, "GET", "/echo", [("Cookie", cookie)])
    assert event["request"]["cookies"] == {"a": "1", "b": "hello world", "json": '{"k":1}', "empty": ""}
    assert event["request"]["headers"] == {"cookie": cookie}


def test_cookies_are_an_empty_object_when_none_are_sent(engine):
    event = raw_request(engine, "GET", "/echo", [])
    assert event["request"] == {"headers": {}, "cookies": {}}


# --- the `request` quirk ---------------------------------------------------------------------


def test_query_key_named_request_replaces_event_request(engine):
    with engine.client() as client:
        event = client.get("/echo?request=from-query&a=1", headers={"Cookie": "c=1"}).json()
    assert event == {"request": "from-query", "a": "1"}


def test_json_key_named_request_replaces_event_request(engine):
    with engine.client() as client:
        event = client.post("/echo", json={"request": {"headers": "forged"}, "a": 1}).json()
    assert event == {"request": {"headers": "forged"}, "a": 1}


def test_form_key_named_request_replaces_event_request(engine):
    with engine.client() as client:
        event = client.post("/echo", data={"request": "from-form"}).json()
    assert event == {"request": "from-form"}
