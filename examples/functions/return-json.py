# Return a Successful JSON Response: JSON in HTTP 200 OK.


def handler(context, event, callback):
    # Construct a dict in any way
    response = {"result": "winner winner!"}
    # A dict as a response will be serialized to JSON and returned
    # with the Content-Type header set to "application/json" automatically
    return callback(None, response)
