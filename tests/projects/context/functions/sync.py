"""Runtime.get_sync(): the Sync service client, built from the service's credentials."""


def handler(context, event, callback):
    sync = Runtime.get_sync()
    camel = Runtime.getSync()
    return callback(None, {"type": type(sync).__name__, "has_documents": hasattr(sync, "documents"),
                           "camel_type": type(camel).__name__})
