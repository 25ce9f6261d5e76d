# Access webhook values from event.


def handler(context, event, callback):
    # Prepare a new messaging response object; no need to import Twilio
    twiml = Twilio.twiml.MessagingResponse()
    # Access incoming text information like the from number and contents off of `event`
    # Access environment variables and other runtime data from `context`
    twiml.message(f"{event.get('From')}: {event.get('Body')}", to=context.MY_NUMBER)
    # Remember to return the TwiML as the second argument to `callback`
    return callback(None, twiml)
