import module_that_does_not_exist_4f2a


def handler(context, event, callback):
    return callback(None, "never reached")
