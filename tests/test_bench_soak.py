"""The soak's own arithmetic (bench/soak.py): durations and what counts as flat. Pure functions only;
the soak itself is run by `python -m bench --soak` (bench/README.md, "Soak")."""

from __future__ import annotations

import pytest

from bench import soak, soak_load


def sample(t_s: float = 0, rss: float = 60, fds: int = 30, threads: int = 6, containers: int | None = 3,
           dirs: int = 0) -> soak.Sample:
    return soak.Sample(t_s, rss, fds, threads, containers, dirs, {}, 0, 0, 0)


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("3m", 180), ("30m", 1800), ("1h30m", 5400), ("45", 45)])
def test_durations(text, seconds):
    assert soak.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "3 minutes", "m", "3x", "-5s"])
def test_a_bad_duration_is_refused(text):
    with pytest.raises(ValueError):
        soak.parse_duration(text)


def test_a_warm_pool_is_flat():
    samples = [sample(), sample(60, rss=75, fds=44, threads=10, containers=11, dirs=4), sample(120, rss=70, fds=40)]
    assert set(soak.flat_verdicts(samples, max_containers=12).values()) == {"flat"}


@pytest.mark.parametrize("last, column", [
    (sample(rss=200), "rss"), (sample(fds=100), "fds"), (sample(threads=40), "threads"),
    (sample(containers=13), "containers"), (sample(dirs=20), "dirs"),
])
def test_growth_is_not_flat(last, column):
    verdicts = soak.flat_verdicts([sample(), last], max_containers=12)
    assert verdicts[column] != "flat"
    assert all(v == "flat" for k, v in verdicts.items() if k != column)


def test_every_hostile_kind_is_sent_and_the_load_stays_bounded():
    assert sorted(soak_load.KINDS) == sorted(soak_load.HANDLER_KINDS + soak_load.CLIENT_KINDS)
    assert soak_load.OK_RATE_PER_S + soak_load.HOSTILE_RATE_PER_S <= 50
    handlers = {p.stem for p in (soak.PROJECTS / "soak-hostile" / "functions").iterdir()}
    assert handlers == set(soak_load.HANDLER_KINDS)
