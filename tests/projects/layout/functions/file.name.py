def handler(context, event, callback):
    return callback(None, "hello from functions/file.name.py")
