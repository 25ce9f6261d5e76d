def handler(context, event, callback)
    return callback(None, "never reached")
