# Soak: leaves an interval timer whose handler would run during later invocations.
import signal


def _tick(signum, frame):
    print("itimer fired after its invocation")


def handler(context, event, callback):
    signal.signal(signal.SIGALRM, _tick)
    signal.setitimer(signal.ITIMER_REAL, 0.5, 0.5)
    return callback(None, "itimer set")
