"""The control plane's metrics, on the engine's registry. Labels are small fixed sets: no SIDs,
no account or service names (those are unbounded and tenant data)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from engine.metrics import NAMESPACE, REGISTRY

BUILD_STATUSES = ("completed", "failed")
DEPLOYMENT_OUTCOMES = ("applied", "refused")
#: Why a handler's log line never reached the store: its environment's share of the queue was full,
#: the whole queue was full (the store is slow or down), or the store rejected the batch.
LOG_DROP_REASONS = ("environment_full", "queue_full", "store_error")

BUILDS = Counter("builds", "Builds finished through the control API, by status.", ["status"],
                 namespace=NAMESPACE, registry=REGISTRY)
BUILD_SECONDS = Histogram("build_duration_seconds", "Time from a build's start to completed or failed.", ["status"],
                          buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600), namespace=NAMESPACE, registry=REGISTRY)
DEPLOYMENTS = Counter("deployments", "Deployments and variable roll-outs through the control API, by outcome.",
                      ["outcome"], namespace=NAMESPACE, registry=REGISTRY)
STORE_UP = Gauge("store_up", "1 while the control store (database) answers, 0 while it does not "
                 "(deployed functions keep serving; the control API answers 503).",
                 namespace=NAMESPACE, registry=REGISTRY)
LOG_LINES_DROPPED = Counter("log_lines_dropped", "Handler and invocation log lines never written to the store, by reason.",
                            ["reason"], namespace=NAMESPACE, registry=REGISTRY)

for _status in BUILD_STATUSES:
    BUILDS.labels(_status)
    BUILD_SECONDS.labels(_status)
for _outcome in DEPLOYMENT_OUTCOMES:
    DEPLOYMENTS.labels(_outcome)
for _reason in LOG_DROP_REASONS:
    LOG_LINES_DROPPED.labels(_reason)
