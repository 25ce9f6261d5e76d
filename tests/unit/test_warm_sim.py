"""The arithmetic of bench/warm_sim.py: the 90/10 mix and the floor any policy has under it."""

from __future__ import annotations

import pytest

from bench import warm_sim


def test_the_mix_gives_the_hot_tenth_90_percent_and_the_rest_10() -> None:
    for tail in ("even", "zipf:1.2"):
        p = warm_sim.mix(500, tail)
        assert len(p) == 500 and sum(p) == pytest.approx(1.0)
        assert sum(p[:50]) == pytest.approx(0.9) and sum(p[50:]) == pytest.approx(0.1)


def test_the_floor_with_an_even_tail_and_a_quarter_budget_is_one_twelfth() -> None:
    """All hot services warm (90 %), 15 of the 90 tail percent of services warm: 1/6 of the tail's
    10 %; cold = 10 % × 5/6 = 8.33 %, whatever N."""
    for n in (40, 500, 4000):
        assert warm_sim.floor(warm_sim.mix(n, "even"), n // 4) == pytest.approx(0.1 * 5 / 6)


def test_the_engine_policy_stays_at_the_floor_on_an_even_tail() -> None:
    p = warm_sim.mix(40, "even")
    assert warm_sim.engine_policy(p, 10, 40_000) == pytest.approx(warm_sim.floor(p, 10), abs=0.01)
