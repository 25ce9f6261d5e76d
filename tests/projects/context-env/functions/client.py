"""Builds the REST client from ACCOUNT_SID/AUTH_TOKEN; raises without them (uncaught → 500)."""


def handler(context, event, callback):
    client = context.get_twilio_client()
    kind = type(client)
    return callback(None, {"account_sid": client.account_sid, "class": f"{kind.__module__}.{kind.__qualname__}"})
