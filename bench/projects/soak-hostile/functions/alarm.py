# Soak (bench/soak.py): leaves a SIGALRM due in 1 s; a worker reused after it dies of it during a later invocation.
import signal


def handler(context, event, callback):
    signal.alarm(1)
    return callback(None, "alarm set")
