"""Pure functions of event building (behavior.md: event)."""

from engine.event import build_context, build_event, collapse, event_headers, parse_cookies


def test_repeated_keys_become_lists_in_arrival_order():
    assert collapse([("a", "1"), ("b", "x"), ("a", "2"), ("a", "3")]) == {"a": ["1", "2", "3"], "b": "x"}


def test_body_keys_override_query_keys():
    event = build_event([("age", "42"), ("name", "Rick")], {"age": "43"}, [])
    assert event["age"] == "43" and event["name"] == "Rick"


def test_headers_lowercased_dropped_and_repeated():
    headers = event_headers([
        ("Host", "x"), ("X-Custom", "1"), ("x-custom", "2"), ("X-Forwarded-For", "1.2.3.4"),
        ("Proxy-Authorization", "s"), ("X-Amz-Trace-Id", "t"), ("X-Accel-Buffering", "no"), ("Accept", "*/*"),
        ("Connection", "close"), ("Referer", "r"), ("X-Real-IP", "ip"),
    ])
    assert headers == {"x-custom": ["1", "2"], "accept": "*/*"}


def test_cookies_decoded_first_wins():
    assert parse_cookies(["a=1; b=hello%20world; a=2", "c=3; a=4"]) == {"a": "1", "b": "hello world", "c": "3"}


def test_no_cookies_is_empty_dict():
    assert build_event([], None, [])["request"] == {"headers": {}, "cookies": {}}


def test_request_key_replaces_event_request():
    assert build_event([("request", "mine")], None, [("Accept", "x")])["request"] == "mine"


def test_context_builtins():
    assert build_context("/p", "h:1", "ZS1", "ZE1") == {
        "PATH": "/p", "DOMAIN_NAME": "h:1", "SERVICE_SID": "ZS1", "ENVIRONMENT_SID": "ZE1"
    }
