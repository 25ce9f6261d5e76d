"""Prometheus metric families. Label values are bounded: service and function names come from
the loaded projects, never from request paths (unknown paths are the one value `(none)`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

NAMESPACE = "functions_engine"
REGISTRY = CollectorRegistry(auto_describe=True)

_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30)

ENGINE_INFO = Info("engine", "Engine version, backend and container runtime.", namespace=NAMESPACE,
                   registry=REGISTRY)
INVOCATIONS = Counter("invocations", "Invocations answered, by HTTP status.",
                      ["service", "function", "runtime", "status"], namespace=NAMESPACE, registry=REGISTRY)
INVOCATION_SECONDS = Histogram("invocation_duration_seconds", "Time from request to reply.",
                               ["service", "function", "runtime"], buckets=_DURATION_BUCKETS,
                               namespace=NAMESPACE, registry=REGISTRY)
ACQUIRE_SECONDS = Histogram("worker_wait_seconds", "Time an invocation waited for a worker.",
                            ["service", "runtime"], buckets=_DURATION_BUCKETS, namespace=NAMESPACE,
                            registry=REGISTRY)
COLD_STARTS = Counter("cold_starts", "Invocations that had to wait for a new worker.",
                      ["service", "runtime"], namespace=NAMESPACE, registry=REGISTRY)
WORKERS = Gauge("workers", "Workers by pool and state.", ["service", "runtime", "state"],
                namespace=NAMESPACE, registry=REGISTRY)
WORKER_EXITS = Counter("worker_exits", "Workers that ended, by reason.", ["service", "runtime", "reason"],
                       namespace=NAMESPACE, registry=REGISTRY)
BOOTSTRAP_SECONDS = Histogram("worker_bootstrap_seconds", "Worker start to `ready`.", ["service", "runtime"],
                              buckets=_DURATION_BUCKETS, namespace=NAMESPACE, registry=REGISTRY)
QUEUE_DEPTH = Gauge("queue_depth", "Requests waiting for a worker.", ["service", "runtime"],
                    namespace=NAMESPACE, registry=REGISTRY)
QUEUE_REJECTIONS = Counter("queue_rejections", "Requests answered 503 because the queue was full.",
                           ["service", "runtime"], namespace=NAMESPACE, registry=REGISTRY)
LOG_BYTES = Counter("handler_log_bytes", "Handler output bytes, kept or dropped over the cap.",
                    ["service", "outcome"], namespace=NAMESPACE, registry=REGISTRY)
IMAGE_BUILDS = Counter("image_builds", "Image builds by kind and outcome.", ["kind", "outcome"],
                       namespace=NAMESPACE, registry=REGISTRY)
IMAGE_BUILD_SECONDS = Histogram("image_build_duration_seconds", "Image build time.", ["kind"],
                                buckets=(1, 5, 10, 30, 60, 120, 300, 600), namespace=NAMESPACE,
                                registry=REGISTRY)
