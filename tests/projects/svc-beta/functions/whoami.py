"""Reports which service and worker answered, and what this worker can see."""

import os
import socket
import uuid

WORKER = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4()}"
SECRET_NAMES = ["ALPHA_SECRET", "BETA_SECRET", "SHARED_NAME"]


def handler(context, event, callback):
    return callback(None, {
        "service": "beta",
        "worker": WORKER,
        "domain": context.DOMAIN_NAME,
        "context": {name: getattr(context, name, None) for name in SECRET_NAMES},
        "environ": dict(os.environ),
        "functions": sorted(Runtime.get_functions()),
        "assets": sorted(Runtime.get_assets()),
    })
