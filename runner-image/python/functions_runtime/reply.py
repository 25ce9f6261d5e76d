"""The callback table of behavior.md: `callback(error, response)` → an HTTP reply.

This is the one place that maps handler outcomes to statuses: a truthy error (or a failure) is a
500, anything else is a 200 or the status of a `Twilio.Response`.
"""

from __future__ import annotations

from typing import Any

from twilio.twiml import TwiML

from .framing import Reply
from .jsvalues import js_truthy, to_json
from .response import Response
from .tracebacks import format_exception

TEXT = "text/plain; charset=utf-8"
JSON = "application/json; charset=utf-8"
XML = "text/xml; charset=utf-8"
BINARY = "application/octet-stream"


def is_twiml(value: Any) -> bool:
    """Messaging/Voice/Fax responses (any TwiML node) render as XML."""
    return isinstance(value, TwiML)


def build_reply(error: Any, response: Any, dev_mode: bool) -> Reply:
    """The reply for a callback call; a response that cannot be serialised becomes a 500."""
    if js_truthy(error):
        return error_value_reply(error, dev_mode)
    try:
        return success_reply(response)
    except (TypeError, ValueError, RecursionError) as exc:
        return exception_reply(exc, dev_mode, prefix="cannot serialise the callback response: ")


def success_reply(response: Any) -> Reply:
    """200 replies by the type of `response` (raises TypeError/ValueError when JSON cannot hold it)."""
    if response is None:
        return Reply(200)
    if isinstance(response, Response):
        return response.to_reply(is_twiml)
    if isinstance(response, str):
        return Reply(200, [("Content-Type", TEXT)], response)
    if isinstance(response, (bytes, bytearray, memoryview)):
        return Reply(200, [("Content-Type", BINARY)], bytes(response))
    if is_twiml(response):
        return Reply(200, [("Content-Type", XML)], str(response))
    if isinstance(response, (dict, list, tuple, bool, int, float)):
        return Reply(200, [("Content-Type", JSON)], to_json(response))
    raise TypeError(f"a value of type {type(response).__name__} is not a string, bytes, TwiML, "
                    "Twilio.Response or JSON-serialisable value")


def error_value_reply(error: Any, dev_mode: bool) -> Reply:
    """500 replies for `callback(error)`: text for a string, {message, name} for an exception, else JSON."""
    if isinstance(error, BaseException):
        return exception_reply(error, dev_mode)
    if isinstance(error, str):
        return Reply(500, [("Content-Type", TEXT)], error)
    if isinstance(error, (bytes, bytearray, memoryview)):
        return Reply(500, [("Content-Type", BINARY)], bytes(error))
    try:
        return Reply(500, [("Content-Type", JSON)], to_json(error))
    except (TypeError, ValueError, RecursionError):
        return error_json(f"callback error of type {type(error).__name__}: {error!s}", type(error).__name__)


def exception_reply(exc: BaseException, dev_mode: bool, prefix: str = "") -> Reply:
    """500 JSON `{"message", "name"}` for an exception, plus `stack` in dev mode."""
    body: dict[str, Any] = {"message": prefix + str(exc), "name": type(exc).__name__}
    if dev_mode:
        body["stack"] = format_exception(exc)
    return Reply(500, [("Content-Type", JSON)], to_json(body))


def error_json(message: str, name: str = "Error") -> Reply:
    """500 JSON for an error the runner itself describes (load errors, unknown function)."""
    return Reply(500, [("Content-Type", JSON)], to_json({"message": message, "name": name}))

