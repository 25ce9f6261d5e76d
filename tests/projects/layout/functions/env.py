def handler(context, event, callback):
    names = ["FOO", "QUOTED", "SINGLE_QUOTED", "WITH_EQUALS", "EMPTY", "AUTH_TOKEN", "LAYOUT_ENV_MARKER"]
    return callback(None, {name: getattr(context, name, None) for name in names})
