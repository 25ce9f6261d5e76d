"""Prometheus metric families, all prefixed `functions_engine_` (documented in docs/metrics.md).

Label values are bounded: service and function names come from the loaded projects, never from
request paths; requests that reach no function (unknown paths and hosts, assets, header-limit
refusals) share the one value `(none)`. Worker exit reasons are the fixed set `EXIT_REASONS`.

No `*_created` series: the client library would export one beside every counter and histogram,
doubling the series each tenant function adds to Prometheus for a timestamp nobody queries.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Final, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics

# Before any family is made: the switch is read when a metric is created (and is process-wide).
disable_created_metrics()

NAMESPACE = "functions_engine"
REGISTRY = CollectorRegistry(auto_describe=True)

#: The label value for anything a request path or host did not resolve to.
NO_LABEL: Final = "(none)"

#: Why a worker ended: the only values of `worker_exits_total{reason}`.
EXIT_REASONS: Final = ("timeout", "dirty", "oom", "crash", "protocol", "idle_reaped", "shutdown", "retired", "evicted")

_WORKER_STATES: Final = ("starting", "idle", "busy", "removing")
# 1 ms to 30 s: a warm echo is ~1 ms, the longest sensible time limit is tens of seconds.
_DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30)

# Exported as `functions_engine_info` (an Info appends `_info` to its name).
ENGINE_INFO = Info(NAMESPACE, "Engine version, backend and container runtime.", registry=REGISTRY)
INVOCATIONS = Counter("invocations", "Requests answered, by function and HTTP status.",
                      ["service", "function", "runtime", "status"], namespace=NAMESPACE, registry=REGISTRY)
INVOCATION_SECONDS = Histogram("invocation_duration_seconds", "Time from request to reply, per function.",
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
START_FAILURES = Counter("worker_start_failures", "Worker starts that failed: not created, or no `ready` "
                         "(exited, broke the protocol or timed out during init).", ["service", "runtime"],
                         namespace=NAMESPACE, registry=REGISTRY)
POOL_HEALTHY = Gauge("pool_healthy", "1 while a pool's workers start and finish invocations; 0 while its "
                     "last start failed or its workers keep dying before finishing one.", ["service", "runtime"],
                     namespace=NAMESPACE, registry=REGISTRY)
OPEN_CONNECTIONS = Gauge("connections", "Open connections on the functions listener.", namespace=NAMESPACE,
                         registry=REGISTRY)
CONNECTIONS_REFUSED = Counter("connections_refused", "Connections closed by a front-door limit, by the limit.",
                              ["limit"], namespace=NAMESPACE, registry=REGISTRY)
#: The only values of `connections_refused_total{limit}`.
CONNECTION_LIMITS: Final = (
    "max_connections", "max_connections_per_client", "header_read_timeout", "response_write_timeout",
)
for _limit in CONNECTION_LIMITS:
    CONNECTIONS_REFUSED.labels(_limit)
IMAGE_BUILDS = Counter("image_builds", "Image builds by kind and outcome.", ["kind", "outcome"],
                       namespace=NAMESPACE, registry=REGISTRY)
IMAGE_BUILD_SECONDS = Histogram("image_build_duration_seconds", "Image build time.", ["kind"],
                                buckets=(1, 5, 10, 30, 60, 120, 300, 600), namespace=NAMESPACE,
                                registry=REGISTRY)

IMAGE_BUILDS_WAITING = Gauge("image_builds_waiting", "Pools' images queued or being built in the background "
                             "(engine/image_queue.py); 0 once every service's image is there.",
                             namespace=NAMESPACE, registry=REGISTRY)


WARM_BUDGET_USED_MB = Gauge("warm_budget_used_mb", "Idle workers (and starts meant to become idle) of all pools, "
                            "each at its pool's memory_mb.", namespace=NAMESPACE, registry=REGISTRY)
WARM_BUDGET_USED_WORKERS = Gauge("warm_budget_used_workers", "Idle workers (and starts meant to become idle) "
                                 "of all pools.", namespace=NAMESPACE, registry=REGISTRY)
WARM_BUDGET_LIMIT_MB = Gauge("warm_budget_limit_mb", "warm_budget_mb.", namespace=NAMESPACE, registry=REGISTRY)
WARM_BUDGET_LIMIT_WORKERS = Gauge("warm_budget_limit_workers", "warm_budget_workers.", namespace=NAMESPACE,
                                  registry=REGISTRY)
WARM_BUDGET_PINNED_MB = Gauge("warm_budget_pinned_mb", "What pinned pools' min_idle floors cost, held or not.",
                              namespace=NAMESPACE, registry=REGISTRY)
WARM_BUDGET_EVICTIONS = Counter("warm_budget_evictions", "Idle workers stopped to keep the warm budget "
                                "(memory, workers) or because their pool was not called (scale_to_zero).",
                                ["reason"], namespace=NAMESPACE, registry=REGISTRY)
#: The only values of `warm_budget_evictions_total{reason}` (engine/warmth.py EVICTION_REASONS).
WARM_BUDGET_EVICTION_REASONS: Final = ("memory", "workers", "scale_to_zero")
for _reason in WARM_BUDGET_EVICTION_REASONS:
    WARM_BUDGET_EVICTIONS.labels(_reason)


class _BudgetView(Protocol):
    limit_mb: int
    limit_workers: int
    used_mb: int
    used_workers: int
    pinned_mb: int


def warm_budget(budget: _BudgetView) -> None:
    """The budget's gauges read it when scraped (engine/warmth.py)."""
    WARM_BUDGET_USED_MB.set_function(lambda: budget.used_mb)
    WARM_BUDGET_USED_WORKERS.set_function(lambda: budget.used_workers)
    WARM_BUDGET_LIMIT_MB.set_function(lambda: budget.limit_mb)
    WARM_BUDGET_LIMIT_WORKERS.set_function(lambda: budget.limit_workers)
    WARM_BUDGET_PINNED_MB.set_function(lambda: budget.pinned_mb)


def warm_budget_evicted(reason: str, count: int) -> None:
    WARM_BUDGET_EVICTIONS.labels(reason).inc(count)


def init_pool(service: str, runtime: str) -> None:
    """Create a pool's series at zero, so rates and alerts work before the first event."""
    for state in _WORKER_STATES:
        WORKERS.labels(service, runtime, state)
    for reason in EXIT_REASONS:
        WORKER_EXITS.labels(service, runtime, reason)
    COLD_STARTS.labels(service, runtime)
    START_FAILURES.labels(service, runtime)
    QUEUE_DEPTH.labels(service, runtime)
    QUEUE_REJECTIONS.labels(service, runtime)
    for outcome in ("kept", "dropped"):
        LOG_BYTES.labels(service, outcome)


class PoolGauges:
    """The gauges of every live pool with one (service, runtime) label set, summed when scraped.

    While a deployment replaces a service, its old and new pools share the label values (labels
    name the service, never a build); each pool counts here until it is closed, and the series go
    away with the last one, so a withdrawn service leaves no stale gauge behind.
    """

    _live: dict[tuple[str, str], list[PoolGauges]] = {}

    def __init__(self, service: str, runtime: str, idle: Callable[[], int], busy: Callable[[], int],
                 starting: Callable[[], int], removing: Callable[[], int], queued: Callable[[], int],
                 healthy: Callable[[], int]) -> None:
        self.key = (service, runtime)
        self.reads = {"idle": idle, "busy": busy, "starting": starting, "removing": removing, "queued": queued,
                      "healthy": healthy}
        pools = self._live.setdefault(self.key, [])
        pools.append(self)
        if len(pools) == 1:
            for state in _WORKER_STATES:
                WORKERS.labels(service, runtime, state).set_function(self._sum(self.key, state))
            QUEUE_DEPTH.labels(service, runtime).set_function(self._sum(self.key, "queued"))
            POOL_HEALTHY.labels(service, runtime).set_function(self._min(self.key, "healthy"))

    @classmethod
    def _sum(cls, key: tuple[str, str], what: str) -> Callable[[], float]:
        return lambda: sum(p.reads[what]() for p in cls._live.get(key, ()))

    @classmethod
    def _min(cls, key: tuple[str, str], what: str) -> Callable[[], float]:
        """Healthy only while every pool of the label set is (a new build that cannot start shows)."""
        return lambda: min((p.reads[what]() for p in cls._live.get(key, ())), default=1)

    def close(self) -> None:
        """This pool no longer counts; the last pool of a label set removes its series."""
        pools = self._live.get(self.key, [])
        if self in pools:
            pools.remove(self)
        if not pools and self._live.pop(self.key, None) is not None:
            service, runtime = self.key
            for state in _WORKER_STATES:
                _remove(WORKERS, service, runtime, state)
            _remove(QUEUE_DEPTH, service, runtime)
            _remove(POOL_HEALTHY, service, runtime)


def _remove(family: Gauge, *labels: str) -> None:
    try:
        family.remove(*labels)
    except KeyError:
        pass


#: Every family with a `service` label (all of them but the engine's and the image builds').
_SERVICE_FAMILIES = (INVOCATIONS, INVOCATION_SECONDS, ACQUIRE_SECONDS, COLD_STARTS, WORKERS, WORKER_EXITS,
                     BOOTSTRAP_SECONDS, QUEUE_DEPTH, QUEUE_REJECTIONS, LOG_BYTES, START_FAILURES, POOL_HEALTHY)


def forget_service(service: str) -> None:
    """Remove every series of a service that is no longer served (withdrawn), so none goes stale."""
    for family in _SERVICE_FAMILIES:
        names = family._labelnames  # prometheus_client keeps no public list of a family's children
        position = names.index("service")
        for values in [v for v in list(family._metrics) if v[position] == service]:
            _remove(family, *values)  # type: ignore[arg-type]
    # The request path caches labelled children; drop them so a later service of that name starts afresh.
    invocations.cache_clear()
    invocation_seconds.cache_clear()
    log_bytes.cache_clear()


def worker_exited(service: str, runtime: str, reason: str | None) -> str:
    """Count one worker exit; a reason outside `EXIT_REASONS` is a crash (the set stays bounded)."""
    bounded = reason if reason in EXIT_REASONS else "crash"
    WORKER_EXITS.labels(service, runtime, bounded).inc()
    return bounded


# Labelled children looked up once per label set (label values are bounded, see above): the
# request path then skips `labels()`'s validation and locking.


@functools.lru_cache(maxsize=4096)
def invocations(service: str, function: str, runtime: str, status: int) -> Counter:
    return INVOCATIONS.labels(service, function, runtime, str(status))


@functools.lru_cache(maxsize=1024)
def invocation_seconds(service: str, function: str, runtime: str) -> Histogram:
    return INVOCATION_SECONDS.labels(service, function, runtime)


@functools.lru_cache(maxsize=256)
def log_bytes(service: str, outcome: str) -> Counter:
    return LOG_BYTES.labels(service, outcome)


def connections_refused(limit: str) -> None:
    """Count one connection closed by `limit` (one of `CONNECTION_LIMITS`)."""
    CONNECTIONS_REFUSED.labels(limit).inc()
