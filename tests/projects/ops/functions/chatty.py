import logging
import sys


def handler(context, event, callback):
    """Prints `lines` lines of output (stdout, stderr, logging), each tagged with `tag`."""
    tag = event.get("tag", "")
    for i in range(int(event.get("lines", "3"))):
        print(f"out {i} {tag} " + "x" * 40)
    print(f"err {tag}", file=sys.stderr)
    logging.getLogger("ops").warning(f"warn {tag}")
    return callback(None, "chatted")
