def handler(context, event, callback):
    """A handler error: the engine answers 500."""
    return callback(RuntimeError("ops test failure"))
