raise RuntimeError("boom while loading top-level-raise")


def handler(context, event, callback):
    return callback(None, "never reached")
