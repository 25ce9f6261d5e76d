"""Sets cookies as the test says: `attr` values through set_cookie, or `raw` Set-Cookie header lines."""


def as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def handler(context, event, callback):
    response = Twilio.Response()
    for line in as_list(event.get("raw")):
        response.append_header("Set-Cookie", line)
    if event.get("attr") is not None:
        response.set_cookie("sid", "py", as_list(event.get("attr")))
    return callback(None, response.set_body("cookies set"))
