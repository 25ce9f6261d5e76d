"""Container images for the docker backend: base, runner, service build.

    engine-base:bookworm                 debian:bookworm-slim, or an equivalent made with debootstrap
    ├── engine-runner-python:<hash12>    + Debian's python3, the `twilio` package, the runner sources
    │   └── engine-service-<name>:<hash12>  + the project's code (/srv/project) and its requirements
    └── engine-runner-node:<hash12>      + the official Node.js 22 binary, the npm `twilio` package, the runner
        └── engine-service-<name>:<hash12>  + the project's code and its package.json dependencies

Each image is tagged by a hash of everything that goes into it, so "is it built?" is one tag
lookup and an unchanged project reuses its image. Python packages are fetched on the host with pip
(wheels only, for the image's CPython and platform) and copied in; Node.js itself and npm packages
are fetched on the host with npm (engine/npmdeps.py) and copied in; image builds use the host
network (`network_mode="host"`) to reach Debian's mirror; containers made from them never do.
A project with Python and JS functions has one service image per runner.

Everything here is blocking: the backend calls it through its executor. `python -m engine.images`
is the command-line face (`scripts/build-base-image` calls it).

One module per image layer: `base.py`, `runner.py`, `service.py`; `build.py` holds what they share.
"""

from engine.images.base import BASE_TAG, UPSTREAM_BASE, debian_mirror, ensure_base_image, mirror_from_sources
from engine.images.build import KIND_LABEL, MANAGED_LABEL, repo_name
from engine.images.runner import RUNTIMES, ensure_runner_image, runner_image_tag, twilio_version
from engine.images.service import (
    PROJECT_DIR, cached_service_image, ensure_service_image, project_files, service_image_tag,
)

__all__ = [
    "BASE_TAG", "KIND_LABEL", "MANAGED_LABEL", "PROJECT_DIR", "RUNTIMES", "UPSTREAM_BASE", "cached_service_image",
    "debian_mirror",
    "ensure_base_image", "ensure_runner_image", "ensure_service_image", "mirror_from_sources", "project_files",
    "repo_name", "runner_image_tag", "service_image_tag", "twilio_version",
]
