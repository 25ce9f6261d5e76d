"""The control plane's metrics, on the engine's registry. Labels are small fixed sets: no SIDs,
no account or service names (those are unbounded and tenant data)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from engine.metrics import NAMESPACE, REGISTRY

BUILD_STATUSES = ("completed", "failed")
DEPLOYMENT_OUTCOMES = ("applied", "refused")

BUILDS = Counter("builds", "Builds finished through the control API, by status.", ["status"],
                 namespace=NAMESPACE, registry=REGISTRY)
BUILD_SECONDS = Histogram("build_duration_seconds", "Time from a build's start to completed or failed.", ["status"],
                          buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600), namespace=NAMESPACE, registry=REGISTRY)
DEPLOYMENTS = Counter("deployments", "Deployments and variable roll-outs through the control API, by outcome.",
                      ["outcome"], namespace=NAMESPACE, registry=REGISTRY)

for _status in BUILD_STATUSES:
    BUILDS.labels(_status)
    BUILD_SECONDS.labels(_status)
for _outcome in DEPLOYMENT_OUTCOMES:
    DEPLOYMENTS.labels(_outcome)
