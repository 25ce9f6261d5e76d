# Build a Plaintext Response with Twilio Response.


def handler(context, event, callback):
    # No need to import Twilio; it is globally available in Functions
    response = Twilio.Response()

    (
        response
        # Set the status code to 200 OK
        .set_status_code(200)
        # Set the response body
        .set_body("This is fine")
    )

    return callback(None, response)
