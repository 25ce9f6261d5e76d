# Two commands do everything on a fresh machine: `make serve` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROJECT ?= examples
PORT ?= 3000
ADMIN_PORT ?= 3001
# The control API (deployments through the Serverless API v1), on the same engine as examples/.
API_PORT ?= 3002
DATA_DIR ?= .engine-data
PYTEST_ARGS ?=

.PHONY: serve test venv docker postgres images bench clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

# Provision a Docker daemon (installs docker.io + runsc as root on Debian if none is reachable).
docker:
	@scripts/ensure-docker

# Provision a PostgreSQL server on 127.0.0.1 for the shared-store tests (Debian's postgresql, as root
# on Debian if none runs); prints its admin URL. `make serve` needs none: its store is SQLite.
postgres:
	@scripts/ensure-postgres

# Build the local base image and the runner images (cached by content hash).
images: venv docker
	$(PY) -m engine.images all

# One engine serves examples/ at http://examples.localhost:$(PORT) and the control API on
# http://127.0.0.1:$(API_PORT)/v1 (its store in $(DATA_DIR)/, git-ignored; deployed environments on
# http://<service>-<suffix>.localhost:$(PORT)): in containers when Docker can be had, else in child
# processes (trusted code only; the engine says so at start-up). Beside the API every service is
# routed by Host, so other hosts are 404.
serve: venv
	@if scripts/ensure-docker; then backend=docker; \
	 else echo "warning: no Docker daemon could be had; serving with the process backend (trusted code only)" >&2; backend=process; fi; \
	 mkdir -p $(DATA_DIR); \
	 echo "Control API: http://127.0.0.1:$(API_PORT)/v1 — make an account with" >&2; \
	 echo "  $(PY) -m engine accounts create me --data-dir $(DATA_DIR)" >&2; \
	 echo "and deploy with twilio-run or the Twilio CLI pointed there (README, \"Control API\")." >&2; \
	 exec $(PY) -m engine serve examples=$(PROJECT) --port $(PORT) --admin-port $(ADMIN_PORT) --api-port $(API_PORT) \
	   --data-dir $(DATA_DIR) --backend $$backend --log-format console

# The whole suite, the docker backend and PostgreSQL included. pytest's exit code 5 (no tests ran) is a failure.
test: venv docker images
	@url=$$(scripts/ensure-postgres) || exit 1; \
	 set +e; ENGINE_TEST_DATABASE_URL=$$url $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	 if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# The load generator is Debian's wrk; installed here when missing (root on Debian).
bench: venv docker images
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >/dev/null; } || \
	  { echo "error: make bench needs wrk (Debian: apt-get install wrk)" >&2; exit 1; }
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
