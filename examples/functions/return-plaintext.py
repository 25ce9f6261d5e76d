# Return a Successful Plaintext Response: plaintext with HTTP 200 OK.


def handler(context, event, callback):
    # Providing a string will result in a 200 OK
    return callback(None, "This is fine")
