"""The control API's errors, and the hosted API's error body they become.

    ApiError (status, code, message)
    ├── Unauthenticated   401 20003: no or wrong credentials
    ├── NotFound          404 20404: no such resource *for this account* (existence is not revealed)
    ├── BadRequest        400 20001: a field is missing or has a bad value (names it)
    ├── Conflict          409 20409: a unique name or domain is taken
    ├── TooLarge          413 20413: an upload or build over its bound (names the setting)
    ├── TooMany           429 20429: over a rate bound (names the setting)
    └── StoreUnavailable  503 20503: the control store (database) does not answer; retry (store.py raises it)

`api.py`'s error middleware is the one place that turns these (and every unexpected exception,
as a 500 that names no internals) into `{"code","message","more_info","status"}`.
"""

from __future__ import annotations

from typing import Any

MORE_INFO = "https://www.twilio.com/docs/errors/{code}"


class ApiError(Exception):
    status = 500
    code = 20500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "more_info": MORE_INFO.format(code=self.code), "status": self.status}


class Unauthenticated(ApiError):
    status, code = 401, 20003


class NotFound(ApiError):
    status, code = 404, 20404


class BadRequest(ApiError):
    status, code = 400, 20001


class Conflict(ApiError):
    status, code = 409, 20409


class TooLarge(ApiError):
    status, code = 413, 20413


class TooMany(ApiError):
    status, code = 429, 20429


class StoreUnavailable(ApiError):
    status, code = 503, 20503
    #: Seconds a client is asked to wait before retrying (the `Retry-After` header).
    retry_after_s = 5

    def __init__(self, reason: str) -> None:
        super().__init__(
            "the control store (database) is unavailable, so nothing can be read or changed right now; "
            f"deployed functions keep serving; retry in a few seconds ({reason})")
