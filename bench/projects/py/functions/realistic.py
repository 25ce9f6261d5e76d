# Realistic: an SMS webhook reply built as TwiML from the form parameters Twilio posts.


def handler(context, event, callback):
    twiml = Twilio.twiml.MessagingResponse()
    twiml.message(f"Thanks {event.get('From')}, we got: {event.get('Body')}")
    return callback(None, twiml)
