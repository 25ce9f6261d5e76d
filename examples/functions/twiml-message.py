# Return a static Messaging response to incoming text messages.


def handler(context, event, callback):
    # Create a new messaging response object
    twiml = Twilio.twiml.MessagingResponse()
    # Use any of the Python SDK methods, such as `message`, to compose a response
    twiml.message("Hello, World!")
    # Return the TwiML as the second argument to `callback`
    # This will render the response as XML in reply to the webhook request
    return callback(None, twiml)
