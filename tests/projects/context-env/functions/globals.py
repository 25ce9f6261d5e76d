"""`Twilio` and `Runtime` are globals, usable at module top level before any handler runs."""

from twilio.jwt.access_token import AccessToken as _AccessToken
from twilio.jwt.access_token import grants as _grants
from twilio.request_validator import RequestValidator as _RequestValidator
from twilio.twiml.fax_response import FaxResponse as _FaxResponse
from twilio.twiml.messaging_response import MessagingResponse as _MessagingResponse
from twilio.twiml.voice_response import VoiceResponse as _VoiceResponse

AT_IMPORT = {
    "twiml": str(Twilio.twiml.MessagingResponse()),
    "response": type(Twilio.Response()).__name__,
    "functions": sorted(Runtime.get_functions()),
    "assets": sorted(Runtime.get_assets()),
}
GRANTS = ["SyncGrant", "ChatGrant", "VoiceGrant", "VideoGrant", "TaskRouterGrant", "PlaybackGrant"]


def handler(context, event, callback):
    url, params = "https://example.com/hook?x=1", {"Body": "Ahoy", "From": "+14444444444"}
    good = _RequestValidator("a-token").compute_signature(url, params)
    checks = {
        "MessagingResponse": Twilio.twiml.MessagingResponse is _MessagingResponse,
        "VoiceResponse": Twilio.twiml.VoiceResponse is _VoiceResponse,
        "FaxResponse": Twilio.twiml.FaxResponse is _FaxResponse,
        "AccessToken": Twilio.jwt.AccessToken is _AccessToken,
        "grants": all(getattr(Twilio.jwt.AccessToken, name) is getattr(_grants, name) for name in GRANTS),
        "validateRequest accepts": Twilio.validateRequest("a-token", good, url, params) is True,
        "validateRequest rejects": Twilio.validateRequest("a-token", good, url, {**params, "Body": "x"}) is False,
    }
    return callback(None, {"checks": checks, "at_import": AT_IMPORT})
