"""A private function: not reachable by URL, loadable through Runtime."""


def secret_value():
    return "value from the private helper"


def handler(context, event, callback):
    return callback(None, "hello from functions/helper.private.py")
