"""Replies with `size` bytes, for the slow-reader test."""


def handler(context, event, callback):
    return callback(None, b"x" * int(event.get("size", "0")))
