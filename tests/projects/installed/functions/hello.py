def handler(context, event, callback):
    return callback(None, "installed ok")
