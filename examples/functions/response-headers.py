# Set Multiple HTTP Headers in a Response.


def handler(context, event, callback):
    # No need to import Twilio; it is globally available in Functions
    response = Twilio.Response()

    # Build a mapping of headers as a way to set many with one command
    headers = {
        "Access-Control-Allow-Origin": "example.com",
        "Access-Control-Allow-Methods": "GET,PUT,POST,DELETE,OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type",
    }

    # Set headers in response
    response.set_headers(headers)

    return callback(None, response)
