def handler(context, event, callback):
    print(f"RAN secret token={event.get('token', '')}")
    body = {key: value for key, value in event.items() if key != "request"}
    return callback(None, {"signed": "ok", "event": body})
