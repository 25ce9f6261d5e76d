def handler(context, event, callback):
    return callback(None, "hello from functions/under_score-dash.py")
