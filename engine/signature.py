"""`X-Twilio-Signature` checks for protected functions and assets, by the official library."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from multidict import MultiDictProxy
from twilio.request_validator import RequestValidator

from engine.forwarded import Origin


def public_url(origin: Origin, raw_path: str) -> str:
    """The URL the client used: scheme and host as routed (`forwarded.Origin`), raw path with query."""
    return f"{origin.scheme}://{origin.host}{raw_path}"


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
