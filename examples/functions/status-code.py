# Set a Status Code in a Response.


def handler(context, event, callback):
    # No need to import Twilio; it is globally available in Functions
    response = Twilio.Response()

    # Set the status code to 204 No Content
    response.set_status_code(204)

    return callback(None, response)
