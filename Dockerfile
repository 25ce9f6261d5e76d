# The engine's own image: Debian's python3, the engine in a venv, nothing else.
#
#   docker build --network host --build-arg BASE_IMAGE=engine-base:bookworm -t functions-engine .
#
# Without a registry the base is the local debootstrap of bookworm that `python -m engine.images base`
# makes (engine-base:bookworm); with one, the default debian:bookworm-slim is the same system.
# The build needs the network (apt, PyPI); the running engine needs none. Serving a project:
#
#   docker run -v "$PWD/my-project:/srv/project:ro" -v /run/docker.sock:/run/docker.sock \
#       --group-add "$(stat -c %g /run/docker.sock)" --read-only --tmpfs /tmp -p 3000:3000 functions-engine
#
# (the socket is the daemon the workers run under: whoever holds it is root on that host;
# see deploy/k8s/README.md for where to put that daemon).
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

# The local base carries the labels by which an engine finds (and reaps) its own containers and
# images; this image is not one of those, and a container of it must never be reaped as an orphan.
LABEL io.functions-engine.managed="false" \
      io.functions-engine.kind="engine"

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log

# The venv keeps its pip: the docker backend runs `python -m pip install --target` to fetch the
# runner's and a project's wheels for their images.
# PIP_NO_CACHE_DIR: nothing under $HOME is worth keeping between builds, and $HOME is /tmp.
ENV PATH=/opt/engine/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/engine

# pip's own variables, for a mirror or an offline wheelhouse (air-gapped or TLS-intercepted build
# networks), e.g. --build-arg PIP_INDEX_URL=https://mirror.example/simple, or
# --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=http://127.0.0.1:8000/ (a wheelhouse
# served on the build host: the build uses the host network). Build-time only: not kept in the image.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_NO_INDEX

# `pip install .`: the runner sources ship inside the package (engine/_runner_image), so the
# installed engine can build its worker images without this source tree.
COPY . /tmp/engine-src
RUN pip install --no-input /tmp/engine-src \
 && rm -rf /tmp/engine-src /tmp/pip-* \
 && python3 -m engine --help > /dev/null

# The engine's user: no home, no shell. It writes nothing outside /tmp (build contexts, wheel
# downloads, the process backend's worker dirs), so the root filesystem can be mounted read-only.
RUN useradd --uid 10000 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin engine
ENV HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 10000:10000
WORKDIR /tmp
# 3000: functions and assets; 3001: /healthz, /readyz, /metrics (keep it off the public ingress).
EXPOSE 3000 3001
# Image builds (docker backend, first start on a daemon) come before the listeners: give them time.
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 \
  CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:3001/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["python3", "-m", "engine"]
CMD ["serve", "/srv/project", "--host", "0.0.0.0", "--backend", "docker"]
