"""Replies with the context built-ins and the project's own variable."""

NAMES = ["PATH", "DOMAIN_NAME", "SERVICE_SID", "ENVIRONMENT_SID", "GREETING"]


def handler(context, event, callback):
    return callback(None, {name: getattr(context, name, None) for name in NAMES})
