import time


def handler(context, event, callback):
    """Sleeps `s` seconds (default 0.2), then answers 200; /slow has a short time limit in the tests."""
    time.sleep(float(event.get("s", "0.2")))
    return callback(None, {"slept": float(event.get("s", "0.2"))})
