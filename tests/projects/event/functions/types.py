"""Replies with the Python type name of every top-level event value."""


def handler(context, event, callback):
    return callback(None, {key: type(value).__name__ for key, value in event.items()})
