"""Pool gauges while a deployment replaces a service: old and new pools share the label values
(labels name the service, never a build), so the series is their sum, and it goes with the last pool."""

from __future__ import annotations

from engine import metrics


def sample(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


def test_gauges_sum_the_live_pools_of_a_service_and_vanish_with_the_last() -> None:
    labels = {"service": "gauge-probe", "runtime": "python"}
    old = metrics.PoolGauges("gauge-probe", "python", idle=lambda: 1, busy=lambda: 2, starting=lambda: 0,
                             removing=lambda: 1, queued=lambda: 0, healthy=lambda: 1)
    new = metrics.PoolGauges("gauge-probe", "python", idle=lambda: 3, busy=lambda: 0, starting=lambda: 1,
                             removing=lambda: 0, queued=lambda: 4, healthy=lambda: 0)
    try:
        assert sample("functions_engine_workers", **labels, state="idle") == 4
        assert sample("functions_engine_workers", **labels, state="busy") == 2
        assert sample("functions_engine_workers", **labels, state="removing") == 1
        assert sample("functions_engine_queue_depth", **labels) == 4
        assert sample("functions_engine_pool_healthy", **labels) == 0  # a new build that cannot start shows
        old.close()
        assert sample("functions_engine_workers", **labels, state="idle") == 3
        assert sample("functions_engine_workers", **labels, state="busy") == 0
        assert sample("functions_engine_workers", **labels, state="removing") == 0
    finally:
        old.close()
        new.close()
    assert sample("functions_engine_workers", **labels, state="idle") is None
    assert sample("functions_engine_queue_depth", **labels) is None
    assert sample("functions_engine_pool_healthy", **labels) is None


def test_forget_service_removes_every_series_of_that_service_only() -> None:
    metrics.init_pool("forget-me", "python")
    metrics.init_pool("keep-me", "python")
    metrics.invocations("forget-me", "f", "python", 200).inc()
    metrics.forget_service("forget-me")
    text = "\n".join(
        f"{s.name}{s.labels}" for family in metrics.REGISTRY.collect() for s in family.samples
    )
    assert "forget-me" not in text
    assert "keep-me" in text
    metrics.forget_service("keep-me")
