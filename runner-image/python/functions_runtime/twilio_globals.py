"""The `Twilio` global: the official `twilio` package under the names JS handlers use, plus `Response`."""

from __future__ import annotations

import importlib
from types import SimpleNamespace
from typing import Any

import twilio
import twilio.jwt.access_token as access_token
import twilio.jwt.access_token.grants as grants
from twilio.jwt.client import ClientCapabilityToken
from twilio.request_validator import RequestValidator
from twilio.twiml import TwiML
from twilio.twiml.fax_response import FaxResponse
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

from .response import Response


def validate_request(auth_token: str, signature: str, url: str, params: Any = None) -> bool:
    """Twilio.validateRequest(authToken, signature, url, params), the JS argument order."""
    return bool(RequestValidator(auth_token).validate(url, params or {}, signature))


def validate_request_with_body(auth_token: str, signature: str, url: str, body: str) -> bool:
    """Twilio.validateRequestWithBody: JSON webhooks, where the URL carries bodySHA256."""
    return bool(RequestValidator(auth_token).validate(url, body, signature))


def get_expected_twilio_signature(auth_token: str, url: str, params: Any = None) -> str:
    """Twilio.getExpectedTwilioSignature(authToken, url, params)."""
    return RequestValidator(auth_token).compute_signature(url, params or {})


def _attach_grants() -> None:
    """Make `AccessToken.SyncGrant` etc. work as in JS (`Twilio.jwt.AccessToken.SyncGrant`)."""
    for name, value in vars(grants).items():
        if isinstance(value, type) and issubclass(value, access_token.AccessTokenGrant) \
                and value is not access_token.AccessTokenGrant and not hasattr(access_token.AccessToken, name):
            setattr(access_token.AccessToken, name, value)


class _Package(SimpleNamespace):
    """A namespace that falls back to the twilio sub-package of the same name (`Twilio.base.exceptions`)."""

    _module: str = "twilio"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return importlib.import_module(f"{self._module}.{name}")
        except ImportError:
            raise AttributeError(f"Twilio has no attribute {name!r} (no module {self._module}.{name})") from None


#: Names of `Twilio` that need `twilio.rest`, which is imported on first use or while idle (preload.py).
_REST_NAMES = {"rest": lambda rest: rest, "Client": lambda rest: rest.Client, "Twilio": lambda rest: rest.Client}


class TwilioGlobal(_Package):
    """`Twilio`: callable like the JS module (`Twilio(accountSid, authToken)` → a REST client)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.Client(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        pick = _REST_NAMES.get(name)
        if pick is None:
            return super().__getattr__(name)
        value = pick(importlib.import_module("twilio.rest"))
        setattr(self, name, value)
        return value


def build_twilio_global() -> TwilioGlobal:
    """Built once at bootstrap and injected into every function module."""
    _attach_grants()
    twiml = _Package(MessagingResponse=MessagingResponse, VoiceResponse=VoiceResponse, FaxResponse=FaxResponse,
                     TwiML=TwiML)
    twiml._module = "twilio.twiml"
    jwt = _Package(AccessToken=access_token.AccessToken, access_token=access_token, grants=grants,
                   ClientCapabilityToken=ClientCapabilityToken)
    jwt._module = "twilio.jwt"
    return TwilioGlobal(
        twiml=twiml, jwt=jwt, Response=Response, RequestValidator=RequestValidator,
        validateRequest=validate_request, validate_request=validate_request,
        validateRequestWithBody=validate_request_with_body, validate_request_with_body=validate_request_with_body,
        getExpectedTwilioSignature=get_expected_twilio_signature,
        get_expected_twilio_signature=get_expected_twilio_signature,
        version=getattr(twilio, "__version__", ""),
    )

