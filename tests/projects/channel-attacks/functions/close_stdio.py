import os


def handler(context, event, callback):
    """Closes fds 0 and 1 (what a process would think is its stdin and stdout), then answers."""
    for fd in (0, 1):
        try:
            os.close(fd)
        except OSError:
            pass
    return callback(None, {"closed": [0, 1]})
