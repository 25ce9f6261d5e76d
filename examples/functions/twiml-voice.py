# Return a Voice response that includes Say and Play verbs.


def handler(context, event, callback):
    # Create a new voice response object
    twiml = Twilio.twiml.VoiceResponse()
    # Webhook information is accessible as keys of the `event` dict
    city = event.get("FromCity")
    number = event.get("From")

    # You can optionally edit the voice used, template variables into your
    # response, play recorded audio, and more
    twiml.say(f"Never gonna give you up, {city or number}", voice="alice")
    twiml.play("https://demo.twilio.com/docs/classic.mp3")
    # Return the TwiML as the second argument to `callback`
    # This will render the response as XML in reply to the webhook request
    return callback(None, twiml)
