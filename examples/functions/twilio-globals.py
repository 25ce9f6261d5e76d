# Twilio: the helper library is a global, no import needed.
#
# The original sample is a fragment (no handler); this function wraps it and replies with an
# Access Token carrying a Sync grant. The account and key values are placeholders.


def handler(context, event, callback):
    # Initialize TwiML without needing to import Twilio
    response = Twilio.twiml.MessagingResponse()

    # Similarly for other utilities, such as Access Tokens
    AccessToken = Twilio.jwt.AccessToken
    SyncGrant = AccessToken.SyncGrant

    token = AccessToken(
        "AC00000000000000000000000000000000",
        "SK00000000000000000000000000000000",
        "placeholder-api-secret-not-a-real-one",
        identity=event.get("identity") or "alice",
    )
    token.add_grant(SyncGrant(service_sid="IS00000000000000000000000000000000"))
    return callback(None, {"twiml": str(response), "token": token.to_jwt()})
