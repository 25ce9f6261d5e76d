# Return an Error Response: an error message with HTTP 500 Error.


def handler(context, event, callback):
    # Providing a single string or an Exception object will result in a 500 Error
    return callback("Something went very, very wrong.")
