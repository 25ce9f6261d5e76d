import time


def handler(context, event, callback):
    time.sleep(1.5)
    return callback(None, "finished within the raised limit")
