# Use built-in Twilio REST Helper to send an SMS Message.
import sys


def handler(context, event, callback):
    # Access the pre-initialized Twilio REST client
    twilio_client = context.get_twilio_client()

    # Determine message details from the incoming event, with fallback values
    from_ = event.get("From") or "+15095550100"
    to = event.get("To") or "+15105550101"
    body = event.get("Body") or "Ahoy, World!"

    try:
        result = twilio_client.messages.create(to=to, from_=from_, body=body)
    except Exception as error:
        print(error, file=sys.stderr)
        return callback(error)
    print("Created message using callback")
    print(result.sid)
    return callback()
