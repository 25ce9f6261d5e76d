def handler(context, event, callback):
    return callback(None, "hello from functions/deep/a/b/c.py")
