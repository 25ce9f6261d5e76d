"""Twilio.Response, rule by rule (behavior.md, "Twilio.Response")."""

from __future__ import annotations

import pytest

TEXT = "text/plain; charset=utf-8"

CASES = {
    "defaults": "new Twilio.Response()",
    "options": "new Twilio.Response({statusCode: 201, headers: {'X-A': '1', 'X-List': ['a', 'b']}, body: {made: 'new'}})",
    "chain": "(() => { const r = new Twilio.Response(); const same = [r.setStatusCode(202), r.setBody('b'), "
             "r.appendHeader('X-A', '1'), r.setHeaders({'X-B': '2'}), r.setCookie('c', 'v'), r.removeCookie('c')]"
             ".every((x) => x === r); return r.setBody(String(same)); })()",
    "append-multi": "new Twilio.Response().appendHeader('X-Multi', 'one').appendHeader('x-multi', 'two')"
                    ".appendHeader('X-MULTI', ['three', 'four']).appendHeader('X-Other', 5)",
    "append-object": "new Twilio.Response().appendHeader('X-Bad', {not: 'allowed'})",
    "set-headers-replaces": "new Twilio.Response().appendHeader('X-Gone', '1').setCookie('gone', '1')"
                            ".setHeaders({'X-Kept': 'yes', 'Set-Cookie': ['a=1', 'b=2']})",
    "cookies": "new Twilio.Response().setCookie('session', 'abc').setCookie('theme', 'dark', ['Path=/', 'HttpOnly'])"
               ".setCookie('lang', 'en')",
    "remove-cookie": "new Twilio.Response().setCookie('session', 'abc', ['Path=/']).setCookie('theme', 'dark')"
                     ".removeCookie('session')",
    "remove-unknown-cookie": "new Twilio.Response().removeCookie('never')",
    "body-object": "new Twilio.Response().setBody({a: [1, 2]})",
    "body-array": "new Twilio.Response().setBody([1, 'x'])",
    "body-object-typed": "new Twilio.Response().appendHeader('content-type', 'application/vnd.api+json').setBody({a: 1})",
    "body-string": "new Twilio.Response().setBody('plain ✓')",
    "body-string-typed": "new Twilio.Response().appendHeader('Content-Type', 'text/html').setBody('<b>hi</b>')",
    "body-buffer": "new Twilio.Response().appendHeader('Content-Type', 'image/png').setBody(Buffer.from([137, 80, 78, 71, 0, 255]))",
    "body-buffer-untyped": "new Twilio.Response().setBody(Buffer.from([1, 2, 3]))",
    "body-null": "new Twilio.Response().setBody(null)",
    "body-twiml": "new Twilio.Response().setBody(new Twilio.twiml.MessagingResponse())",
    "status-string": "new Twilio.Response().setStatusCode('404')",
    "status-invalid": "new Twilio.Response().setStatusCode(99)",
    "unsafe-headers": "new Twilio.Response().appendHeader('Content-Length', '999').appendHeader('X-Evil', 'a\\r\\nInjected: 1')",
    "public-fields": "(() => { const r = new Twilio.Response(); r.headers['X-Direct'] = 'd'; r.statusCode = 203; "
                     "r.body = 'direct'; return r; })()",
}


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return {
        f"functions/{name}.js": f"exports.handler = (context, event, callback) => callback(null, {code});\n"
        for name, code in CASES.items()
    }


@pytest.fixture
def runner(node_runner, files):
    return node_runner(files)


def test_defaults_200_no_headers_empty_body(runner) -> None:
    out = runner.invoke("defaults")
    assert (out.status, out.result["headers"], out.body) == (200, [], b"")


def test_constructor_options(runner) -> None:
    out = runner.invoke("options")
    assert out.status == 201
    assert out.result["headers"] == [["X-A", "1"], ["X-List", "a"], ["X-List", "b"], ["Content-Type", "application/json"]]
    assert out.json() == {"made": "new"}


def test_every_mutator_returns_the_response(runner) -> None:
    out = runner.invoke("chain")
    assert (out.status, out.text) == (202, "true")
    assert out.result["headers"] == [["X-B", "2"], ["Set-Cookie", "c=;Max-Age=0"], ["Content-Type", TEXT]]


def test_append_header_on_existing_name_is_multi_valued(runner) -> None:
    out = runner.invoke("append-multi")
    assert out.result["headers"] == [
        ["X-Multi", "one"], ["X-Multi", "two"], ["X-Multi", "three"], ["X-Multi", "four"], ["X-Other", "5"],
    ]


def test_append_header_with_an_object_value_is_an_error(runner) -> None:
    out = runner.invoke("append-object")
    assert out.status == 500
    body = out.json()
    assert body["name"] == "TypeError"
    assert "X-Bad" in body["message"]


def test_set_headers_replaces_everything_including_cookies(runner) -> None:
    out = runner.invoke("set-headers-replaces")
    assert out.result["headers"] == [["X-Kept", "yes"], ["Set-Cookie", "a=1"], ["Set-Cookie", "b=2"]]


def test_each_cookie_is_its_own_set_cookie_line(runner) -> None:
    out = runner.invoke("cookies")
    assert out.headers("Set-Cookie") == ["session=abc", "theme=dark;Path=/;HttpOnly", "lang=en"]


def test_remove_cookie_drops_earlier_ones_and_expires(runner) -> None:
    out = runner.invoke("remove-cookie")
    assert out.headers("Set-Cookie") == ["theme=dark", "session=;Max-Age=0"]
    assert runner.invoke("remove-unknown-cookie").headers("Set-Cookie") == ["never=;Max-Age=0"]


@pytest.mark.parametrize(("name", "value"), [("body-object", {"a": [1, 2]}), ("body-array", [1, "x"])])
def test_object_body_is_json_with_default_type(runner, name, value) -> None:
    out = runner.invoke(name)
    assert out.result["headers"] == [["Content-Type", "application/json"]]
    assert out.json() == value


def test_object_body_keeps_a_set_content_type(runner) -> None:
    out = runner.invoke("body-object-typed")
    assert out.result["headers"] == [["content-type", "application/vnd.api+json"]]
    assert out.json() == {"a": 1}


def test_string_body_as_is_with_default_type(runner) -> None:
    out = runner.invoke("body-string")
    assert (out.result["headers"], out.text) == ([["Content-Type", TEXT]], "plain ✓")
    typed = runner.invoke("body-string-typed")
    assert (typed.result["headers"], typed.text) == ([["Content-Type", "text/html"]], "<b>hi</b>")


def test_buffer_body_is_raw(runner) -> None:
    out = runner.invoke("body-buffer")
    assert out.result["headers"] == [["Content-Type", "image/png"]]
    assert out.body == bytes([137, 80, 78, 71, 0, 255])
    untyped = runner.invoke("body-buffer-untyped")
    assert (untyped.result["headers"], untyped.body) == ([], b"\x01\x02\x03")


def test_null_body_is_empty(runner) -> None:
    out = runner.invoke("body-null")
    assert (out.result["headers"], out.body) == ([], b"")


def test_twiml_body_is_xml(runner) -> None:
    out = runner.invoke("body-twiml")
    assert out.result["headers"] == [["Content-Type", "text/xml; charset=utf-8"]]
    assert out.text.endswith("<Response/>")


def test_status_code_as_digit_string(runner) -> None:
    assert runner.invoke("status-string").status == 404


def test_invalid_status_code_is_500(runner) -> None:
    out = runner.invoke("status-invalid")
    assert out.status == 500
    assert "status code" in out.json()["message"]


def test_header_pairs_pass_through_unfiltered(runner) -> None:
    """The engine filters CR/LF and framing headers; the runner passes pairs as-is."""
    out = runner.invoke("unsafe-headers")
    assert out.result["headers"] == [["Content-Length", "999"], ["X-Evil", "a\r\nInjected: 1"]]


def test_public_fields_can_be_set_directly(runner) -> None:
    out = runner.invoke("public-fields")
    assert (out.status, out.result["headers"], out.text) == (203, [["X-Direct", "d"], ["Content-Type", TEXT]], "direct")
