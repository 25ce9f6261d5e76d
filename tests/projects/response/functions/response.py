"""Builds a Twilio.Response, picked by `event["mode"]`."""

BIG = 4 * 1024 * 1024 + 1


def chain_results(r, camel):
    """Whether each mutator returns the response itself."""
    if camel:
        steps = [
            lambda: r.setStatusCode(202), lambda: r.setBody("x"), lambda: r.appendHeader("X-A", "1"),
            lambda: r.setHeaders({"X-B": "2"}), lambda: r.setCookie("c", "1"), lambda: r.removeCookie("c"),
        ]
    else:
        steps = [
            lambda: r.set_status_code(202), lambda: r.set_body("x"), lambda: r.append_header("X-A", "1"),
            lambda: r.set_headers({"X-B": "2"}), lambda: r.set_cookie("c", "1"), lambda: r.remove_cookie("c"),
        ]
    return [step() is r for step in steps]


def build(mode):
    R = Twilio.Response
    if mode == "default":
        return R()
    if mode == "constructor":
        return R(status_code=201, headers={"X-A": "1"}, body={"a": 1})
    if mode == "chainable":
        body = {"snake": chain_results(R(), False), "camel": chain_results(R(), True)}
        return R().set_body(body)
    if mode == "status-204":
        return R().set_status_code(204)
    if mode == "status-418":
        return R().set_status_code(418).set_body("I'm a teapot")
    if mode == "status-500-body":
        return R().set_status_code(500).set_body({"ok": False})
    if mode == "redirect":
        return R().set_status_code(302).append_header("Location", "/elsewhere")
    if mode == "body-string":
        return R().set_body("plain text")
    if mode == "body-unicode":
        return R().set_body("héllo ✓ 🎉")
    if mode == "body-string-custom-type":
        return R().append_header("Content-Type", "text/html; charset=utf-8").set_body("<b>bold</b>")
    if mode == "body-dict":
        return R().set_body({"everything": "is alright"})
    if mode == "body-list":
        return R().set_body([1, "two", None])
    if mode == "body-dict-custom-type":
        return R().append_header("Content-Type", "application/vnd.api+json").set_body({"data": []})
    if mode == "body-dict-after-set-headers":
        return R().set_headers({"Content-Type": "text/plain"}).set_body({"a": 1})
    if mode == "body-bytes":
        return R().append_header("Content-Type", "image/png").set_body(bytes(range(256)) * 2)
    if mode == "body-none":
        return R().set_body(None)
    if mode == "multi-append":
        return R().append_header("X-Multi", "a").append_header("x-multi", "b").append_header("X-MULTI", "c")
    if mode == "append-list":
        return R().append_header("X-List", ["a", "b"])
    if mode == "append-dict":
        return R().append_header("X-Bad", {"not": "allowed"})
    if mode == "set-headers-replaces":
        return R().set_cookie("c", "1").append_header("X-Old", "1").set_headers({"X-New": "2"})
    if mode == "set-headers-list":
        return R().set_headers({"X-L": ["a", "b"], "X-S": "s"})
    if mode == "set-headers-then-append":
        return R().set_headers({"X-A": "1"}).append_header("x-a", "2")
    if mode == "cookies":
        return R().set_cookie("session", "abc", ["Path=/", "HttpOnly"]).set_cookie("theme", "dark")
    if mode == "remove-cookie":
        return R().set_cookie("a", "1").set_cookie("b", "2").set_cookie("a", "3").remove_cookie("a")
    if mode == "remove-cookie-never-set":
        return R().remove_cookie("gone")
    if mode == "crlf-value":
        return R().append_header("X-Good", "ok").append_header("X-Bad", "a\r\nInjected: yes").set_body("body")
    if mode == "lf-value":
        return R().append_header("X-Good", "ok").append_header("X-Bad", "a\nInjected: yes").set_body("body")
    if mode == "cr-value":
        return R().append_header("X-Good", "ok").append_header("X-Bad", "a\rInjected: yes").set_body("body")
    if mode == "lf-name":
        return R().append_header("X-Good", "ok").append_header("X-Bad\nInjected", "v").set_body("body")
    if mode == "crlf-cookie":
        return R().set_cookie("good", "1").set_cookie("bad", "1\r\nInjected: yes").set_body("body")
    if mode == "framing-append":
        return (R().append_header("Content-Length", "12345").append_header("Transfer-Encoding", "x-handler-te")
                .append_header("Connection", "x-handler-conn").set_body("framed by the engine"))
    if mode == "framing-set-headers":
        return R().set_headers({"content-length": "12345", "transfer-encoding": "x-handler-te",
                                "connection": "x-handler-conn"}).set_body("framed by the engine")
    if mode == "big":
        return R().set_body("x" * BIG)
    if mode == "camel":
        r = R()
        r.setStatusCode(201).appendHeader("X-A", "1").appendHeader("X-A", "2").setBody({"a": 1})
        return r.setCookie("k", "v", ["Path=/"]).setCookie("gone", "1").removeCookie("gone")
    if mode == "camel-set-headers":
        return R().setCookie("k", "v").setHeaders({"X-Only": "1"})
    raise ValueError(f"unknown mode {mode!r}")


def handler(context, event, callback):
    return callback(None, build(event.get("mode")))
