"""Prints a marker naming the request's `token`, so a test can tell whether it ran."""


def handler(context, event, callback):
    print(f"RAN echo token={event.get('token', '')}")
    body = {key: value for key, value in event.items() if key != "request"}
    return callback(None, {"event": body, "headers": event.get("request", {}).get("headers", {})})
