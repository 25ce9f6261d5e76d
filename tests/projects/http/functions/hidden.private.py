def handler(context, event, callback):
    print(f"RAN hidden token={event.get('token', '')}")
    return callback(None, "private function ran")
