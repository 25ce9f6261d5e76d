def handler(context, event, callback):
    return callback(None, "only in alpha")
