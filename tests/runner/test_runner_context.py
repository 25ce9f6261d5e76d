"""`context` and the `Runtime`/`Twilio` objects as Python objects (no subprocess)."""

from __future__ import annotations

import copy

import pytest
from twilio.request_validator import RequestValidator

from functions_runtime.context import Context, MissingCredentialsError
from functions_runtime.twilio_globals import build_twilio_global


def test_env_overrides_built_ins_and_every_access_style_works() -> None:
    context = Context({"PATH": "/x", "DOMAIN_NAME": "a"}, {"DOMAIN_NAME": "b", "MY-VAR": "1"})
    assert (context.PATH, context.DOMAIN_NAME, context["MY-VAR"], context.get("NOPE", 3)) == ("/x", "b", "1", 3)
    assert getattr(context, "NOPE", "default") == "default" and "PATH" in context
    with pytest.raises(AttributeError, match="NOPE"):
        _ = context.NOPE
    assert copy.copy(context).PATH == "/x"


def test_get_twilio_client_needs_both_credentials() -> None:
    with pytest.raises(MissingCredentialsError, match="ACCOUNT_SID and AUTH_TOKEN"):
        Context({}, {"ACCOUNT_SID": "AC1"}).get_twilio_client()
    client = Context({}, {"ACCOUNT_SID": "AC" + "2" * 32, "AUTH_TOKEN": "t"}).getTwilioClient()
    assert client.account_sid == "AC" + "2" * 32


def test_twilio_global_validate_request_and_callable_client() -> None:
    twilio_global = build_twilio_global()
    url = "https://example.com/hook"
    signature = RequestValidator("tok").compute_signature(url, {"A": "1"})
    assert twilio_global.validateRequest("tok", signature, url, {"A": "1"}) is True
    assert twilio_global.validateRequest("tok", signature, url, {"A": "2"}) is False
    assert twilio_global.getExpectedTwilioSignature("tok", url, {"A": "1"}) == signature
    assert twilio_global("AC" + "3" * 32, "t").account_sid == "AC" + "3" * 32
    with pytest.raises(AttributeError):
        _ = twilio_global.no_such_thing
