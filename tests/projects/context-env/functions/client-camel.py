"""The camelCase alias of get_twilio_client."""


def handler(context, event, callback):
    client = context.getTwilioClient()
    return callback(None, {"account_sid": client.account_sid})
