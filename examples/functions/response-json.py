# Building a JSON Response with Twilio Response.


def handler(context, event, callback):
    # No need to import Twilio; it is globally available in Functions
    response = Twilio.Response()

    (
        response
        # Set the status code to 200 OK
        .set_status_code(200)
        # Set the Content-Type Header
        .append_header("Content-Type", "application/json")
        # Set the response body
        .set_body({
            "everything": "is alright",
        })
    )

    return callback(None, response)
