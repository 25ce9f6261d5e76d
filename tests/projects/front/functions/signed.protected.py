"""A protected function: runs only with a valid X-Twilio-Signature for the URL the engine routed."""


def handler(context, event, callback):
    print(f"RAN signed token={event.get('token', '')}")
    return callback(None, {"sid": context.SERVICE_SID, "domain": context.DOMAIN_NAME})
