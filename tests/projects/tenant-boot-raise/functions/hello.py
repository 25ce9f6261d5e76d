raise RuntimeError("broken at import")  # a load error: this function answers 500, the worker is fine


def handler(context, event, callback):
    return callback(None, "never reached")
