# Set an HTTP Header in a Response: a 301 redirect.


def handler(context, event, callback):
    # No need to import Twilio; it is globally available in Functions
    response = Twilio.Response()

    (
        response
        # Set the status code to 301 Redirect
        .set_status_code(301)
        # Set the Location header for redirect
        .append_header("Location", "https://twilio.com")
    )

    return callback(None, response)
