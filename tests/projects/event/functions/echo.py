"""Replies with the whole event, `request` included."""


def handler(context, event, callback):
    return callback(None, event)
