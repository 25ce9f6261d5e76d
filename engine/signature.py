"""`X-Twilio-Signature` checks for protected functions and assets, by the official library."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from aiohttp import web
from multidict import MultiDictProxy
from twilio.request_validator import RequestValidator


def public_url(request: web.Request, behind_proxy: bool) -> str:
    """The URL the client used: scheme, host and raw path with query."""
    scheme, host = request.scheme, request.host
    if behind_proxy:
        scheme = request.headers.get("X-Forwarded-Proto", scheme).split(",")[0].strip() or scheme
        host = request.headers.get("X-Forwarded-Host", host).split(",")[0].strip() or host
    return f"{scheme}://{host}{request.raw_path}"


def is_valid(
    auth_token: str,
    url: str,
    signature: str | None,
    form: MultiDictProxy[str] | None,
    raw_body: bytes,
) -> bool:
    """Form posts sign URL + sorted params; other bodies must be pinned by `bodySHA256` in the URL."""
    if not signature or not auth_token:
        return False
    validator = RequestValidator(auth_token)
    if form is not None:
        return bool(validator.validate(url, form, signature))
    if raw_body:
        if "bodySHA256" not in parse_qs(urlsplit(url).query):
            return False
        try:
            text = raw_body.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return bool(validator.validate(url, text, signature))
    return bool(validator.validate(url, {}, signature))
