"""Which service answered (its SERVICE_SID, set per service in the test's config) and for which host."""


def handler(context, event, callback):
    return callback(None, {"sid": context.SERVICE_SID, "domain": context.DOMAIN_NAME})
