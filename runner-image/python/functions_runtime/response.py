"""`Twilio.Response`: a reply whose status, headers and body the handler sets itself.

Follows the `Twilio.Response` section of behavior.md. Headers keep the first spelling of each
name and are matched case-insensitively; a name may hold several values (repeated header lines).
The runner does not filter header names or values: the engine drops unsafe ones when it frames
the HTTP reply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .framing import Reply
from .jsvalues import to_json

HeaderValue = str | int | float | bool | list[str | int | float | bool]


class Response:
    """Twilio.Response: `Response({"statusCode": 201, "headers": {...}, "body": ...})` or keywords."""

    def __init__(self, options: Mapping[str, Any] | None = None, *, statusCode: int | None = None,
                 status_code: int | None = None, headers: Any = None, body: Any = None) -> None:
        if options is not None and not isinstance(options, Mapping):
            raise TypeError(f"Twilio.Response(options): options must be a dict, not {type(options).__name__}")
        opts = dict(options or {})
        status = next((s for s in (status_code, statusCode, opts.get("statusCode"), opts.get("status_code"))
                       if s is not None), 200)
        self._status = _check_status(status)
        self._headers: dict[str, tuple[str, list[str]]] = {}
        initial_headers = headers if headers is not None else opts.get("headers")
        if initial_headers is not None:
            self.set_headers(initial_headers)
        self._body: Any = body if body is not None else opts.get("body")

    # --- mutators (chainable) -------------------------------------------------------------

    def set_status_code(self, code: int) -> Response:
        """Set the HTTP status (an integer 100–999)."""
        self._status = _check_status(code)
        return self

    def set_body(self, body: Any) -> Response:
        """Set the body: dict/list → JSON, str → text, bytes → raw, None → empty."""
        self._body = body
        return self

    def append_header(self, name: str, value: HeaderValue) -> Response:
        """Add a header; an existing name (any case) becomes multi-valued; a list adds each item."""
        values = _header_values(name, value)
        key = str(name).lower()
        if key in self._headers:
            self._headers[key][1].extend(values)
        else:
            self._headers[key] = (str(name), values)
        return self

    def set_headers(self, headers: Mapping[str, HeaderValue]) -> Response:
        """Replace every header (cookies included) with this mapping; list values repeat the header."""
        if not isinstance(headers, Mapping):
            raise TypeError(f"Twilio.Response.set_headers() takes a dict, not {type(headers).__name__}")
        self._headers = {}
        for name, value in headers.items():
            self.append_header(name, value)
        return self

    def set_cookie(self, name: str, value: str, attrs: list[str] | None = None) -> Response:
        """Append `name=value;attr1;attr2` as its own Set-Cookie line."""
        cookie = f"{name}={value}" + "".join(f";{attr}" for attr in (attrs or []))
        return self.append_header("Set-Cookie", cookie)

    def remove_cookie(self, name: str) -> Response:
        """Drop earlier Set-Cookie lines for name and expire it in the browser (`name=;Max-Age=0`)."""
        entry = self._headers.get("set-cookie")
        if entry is not None:
            entry[1][:] = [v for v in entry[1] if not v.startswith(f"{name}=")]
        return self.append_header("Set-Cookie", f"{name}=;Max-Age=0")

    setStatusCode = set_status_code
    setBody = set_body
    appendHeader = append_header
    setHeaders = set_headers
    setCookie = set_cookie
    removeCookie = remove_cookie

    # --- read access ----------------------------------------------------------------------

    @property
    def status_code(self) -> int:
        return self._status

    statusCode = status_code

    @property
    def headers(self) -> dict[str, str | list[str]]:
        """Headers as set: one value as a string, several as a list."""
        return {name: values[0] if len(values) == 1 else list(values) for name, values in self._headers.values()}

    @property
    def body(self) -> Any:
        return self._body

    def __repr__(self) -> str:
        return f"<Twilio.Response status={self._status} headers={self.headers!r}>"

    # --- the reply ------------------------------------------------------------------------

    def to_reply(self, is_twiml: Any = None) -> Reply:
        """The HTTP reply as of now, adding a Content-Type when the handler set none."""
        pairs = [(name, value) for name, values in self._headers.values() for value in values]
        has_type = "content-type" in self._headers and bool(self._headers["content-type"][1])
        body, default_type = _render_body(self._body, is_twiml)
        if default_type and not has_type:
            pairs.append(("Content-Type", default_type))
        return Reply(status=self._status, headers=pairs, body=body)


def _render_body(body: Any, is_twiml: Any) -> tuple[str | bytes, str | None]:
    if body is None:
        return "", None
    if isinstance(body, str):
        return body, "text/plain; charset=utf-8"
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body), "application/octet-stream"
    if is_twiml is not None and is_twiml(body):
        return str(body), "text/xml; charset=utf-8"
    return to_json(body), "application/json"


def _check_status(code: Any) -> int:
    if isinstance(code, str) and code.strip().isdigit():
        code = int(code)
    if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 999:
        raise ValueError(f"Twilio.Response status code must be an integer from 100 to 999, got {code!r}")
    return code


def _header_values(name: str, value: Any) -> list[str]:
    items = value if isinstance(value, (list, tuple)) else [value]
    return [_header_text(name, item) for item in items]


def _header_text(name: str, value: Any) -> str:
    """Header values as JS String() would print them; objects are an error, as in the hosted service."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    raise TypeError(
        f"Twilio.Response header {name!r}: value must be a string, number or list of them, not {type(value).__name__}"
    )
