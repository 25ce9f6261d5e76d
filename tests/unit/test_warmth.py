"""The warm budget's rules (engine/warmth.py) with plain fake pools: LRU order, pinned floors,
failing pools, the pinned check. End to end on Docker: tests/test_warm_budget.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.warmth import PinnedDemand, WarmBudget, default_warm_budget_mb


class _Member:
    def __init__(self, name: str, idle: int = 0, cost: int = 100, floor: int = 0, failing: bool = False) -> None:
        self.name, self.idle, self.cost, self.floor, self.failing = name, idle, cost, floor, failing
        self.evicted = 0

    @property
    def warm_cost_mb(self) -> int:
        return self.cost

    @property
    def warm_want(self) -> int:
        return max(1, self.floor)

    @property
    def warm_floor(self) -> int:
        return self.floor

    @property
    def warm_held(self) -> int:
        return self.idle

    @property
    def evictable(self) -> int:
        return max(0, self.idle - self.floor)

    @property
    def warm_short(self) -> bool:
        return self.idle < self.warm_want

    def evict_idle(self) -> bool:
        if self.evictable <= 0:
            return False
        self.idle -= 1
        self.evicted += 1
        return True


def _joined(budget: WarmBudget, *members: _Member) -> None:
    for m in members:
        budget.join(m, m.name, "python")
        budget.sync(m)


def test_over_the_budget_the_least_recently_called_pool_loses_its_idle_workers_first() -> None:
    budget = WarmBudget(limit_mb=10_000, limit_workers=2)
    a, b, c = _Member("a"), _Member("b"), _Member("c")
    _joined(budget, a, b, c)
    for m in (a, b, c):
        budget.touch(m)
        m.idle = 1
        budget.sync(m)
    assert (a.evicted, b.evicted, c.evicted) == (1, 0, 0)
    assert budget.used_workers == 2
    budget.touch(a)  # a is called again, with no warm worker: b is now the least recent
    assert a.warm_short and budget.admit(a)
    assert b.evicted == 1 and c.evicted == 0
    a.idle = 1
    budget.sync(a)


def test_a_pool_at_its_target_gets_only_free_room_for_a_replacement() -> None:
    """Taking a neighbour's only warm worker for a second one would pass the cold start on."""
    budget = WarmBudget(limit_mb=10_000, limit_workers=2)
    a, b = _Member("a"), _Member("b")
    _joined(budget, a, b)
    for m in (a, b):
        budget.touch(m)
        m.idle = 1
        budget.sync(m)
    budget.touch(b)
    budget.touch(a)
    assert not a.warm_short and not budget.admit(a)
    assert b.evicted == 0


def test_the_memory_limit_counts_each_pool_at_its_own_memory_mb() -> None:
    budget = WarmBudget(limit_mb=300, limit_workers=100)
    big, small = _Member("big", cost=200), _Member("small", cost=100)
    _joined(budget, big, small)
    budget.touch(big)
    big.idle = 1
    budget.sync(big)
    budget.touch(small)
    small.idle = 2
    budget.sync(small)
    assert big.evicted == 1 and budget.used_mb == 200


def test_a_pool_cannot_evict_pools_called_more_recently_than_itself() -> None:
    budget = WarmBudget(limit_mb=10_000, limit_workers=1)
    old, new = _Member("old"), _Member("new")
    _joined(budget, old, new)
    budget.touch(old)
    budget.touch(new)
    new.idle = 1
    budget.sync(new)
    assert not budget.admit(old)
    assert new.evicted == 0


def test_a_pinned_floor_is_never_evicted_and_may_evict_anyone_above_theirs() -> None:
    budget = WarmBudget(limit_mb=10_000, limit_workers=2)
    pinned, hot = _Member("pinned", floor=1), _Member("hot")
    _joined(budget, pinned, hot)
    budget.touch(hot)
    hot.idle = 2
    budget.sync(hot)
    assert budget.admit(pinned)  # its floor evicts the busier, more recent pool's idle worker
    pinned.idle = 1
    budget.sync(pinned)
    assert hot.evicted == 1
    budget.touch(hot)
    hot.idle = 3
    budget.sync(hot)
    assert pinned.evicted == 0 and pinned.idle == 1


def test_a_failing_pool_never_evicts_anyone() -> None:
    budget = WarmBudget(limit_mb=10_000, limit_workers=1)
    good, broken = _Member("good"), _Member("broken", failing=True)
    _joined(budget, good, broken)
    budget.touch(good)
    good.idle = 1
    budget.sync(good)
    budget.touch(broken)
    assert not budget.admit(broken)
    assert good.evicted == 0


def test_pinned_floors_over_the_budget_are_an_error_naming_them_and_the_numbers() -> None:
    budget = WarmBudget(limit_mb=500, limit_workers=10)
    with pytest.raises(ConfigError) as err:
        budget.check_pinned([PinnedDemand("shop", "python", 2, 256), PinnedDemand("blog", "python", 1, 256)])
    text = str(err.value)
    assert "shop/python (min_idle=2 × memory_mb=256)" in text and "blog/python" in text
    assert "768 MB" in text and "warm_budget_mb=500" in text


def test_at_start_pools_warm_in_order_while_they_fit_beside_the_pinned_floors() -> None:
    budget = WarmBudget(limit_mb=10_000, limit_workers=3)
    pinned = _Member("pinned", floor=1)
    budget.check_pinned([PinnedDemand("pinned", "python", 1, 100)])
    warm = []
    for m in [_Member(f"s{i}") for i in range(4)] + [pinned]:
        if budget.join(m, m.name, "python"):
            m.idle = 1 if not m.floor else m.floor
            budget.sync(m)
            warm.append(m.name)
    assert warm == ["s0", "s1", "pinned"]


def test_the_default_is_a_quarter_of_memtotal(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       8388608 kB\nMemFree: 1 kB\n")
    assert default_warm_budget_mb(meminfo) == 2048
    assert default_warm_budget_mb(tmp_path / "missing") == 1024


def _call(budget: WarmBudget, member: _Member) -> None:
    """One request: the pool is touched, serves on its idle worker (or a new one), which is idle after."""
    budget.touch(member)
    member.idle = 1
    budget.sync(member)


def test_a_pool_called_once_loses_its_worker_before_a_pool_called_repeatedly_even_a_less_recent_one() -> None:
    """LRU-2: `hot` is called twice, then one-off calls to the tail come in; each evicts the previous
    one-off, never `hot`, although `hot` was called less recently than all of them."""
    budget = WarmBudget(limit_mb=10_000, limit_workers=2)
    hot, tail = _Member("hot"), [_Member(f"t{i}") for i in range(4)]
    _joined(budget, hot, *tail)
    _call(budget, hot)
    _call(budget, hot)
    for member in tail:
        _call(budget, member)
    assert hot.evicted == 0 and hot.idle == 1
    assert [m.evicted for m in tail] == [1, 1, 1, 0]
    assert budget.used_workers == 2


def test_with_recency_only_the_same_one_off_calls_evict_the_repeated_pool() -> None:
    """The old policy (second_call=False, LRU), for contrast: the second one-off call evicts `hot`."""
    budget = WarmBudget(limit_mb=10_000, limit_workers=2, second_call=False)
    hot, tail = _Member("hot"), [_Member(f"t{i}") for i in range(4)]
    _joined(budget, hot, *tail)
    _call(budget, hot)
    _call(budget, hot)
    for member in tail:
        _call(budget, member)
    assert hot.evicted == 1


def test_pools_called_once_go_least_recent_first_and_joining_warm_is_not_a_call() -> None:
    """Among pools called at most once the order is plain LRU (never called first, then warmed at start in
    join order), so
    a pool warmed at start and then called once is no better protected than any one-off."""
    budget = WarmBudget(limit_mb=10_000, limit_workers=10)
    a, b, c, d = _Member("a"), _Member("b"), _Member("c"), _Member("d")
    assert budget.join(a, "a", "python") and budget.join(b, "b", "python")  # warm at start
    a.idle = b.idle = 1
    budget.sync(a)
    budget.sync(b)
    budget.limit_workers = 2
    assert not budget.join(c, "c", "python") and not budget.join(d, "d", "python")
    order = budget.eviction_order()
    assert set(order[:2]) == {c, d} and order[2:] == [a, b]
    budget.touch(a)
    budget.touch(b)
    budget.touch(c)
    assert budget.eviction_order() == [d, a, b, c]
    budget.touch(a)
    assert budget.eviction_order() == [d, b, c, a]


def test_a_once_called_pool_cannot_take_room_from_a_repeatedly_called_one() -> None:
    """admit: a pool may only evict pools before it in the eviction order."""
    budget = WarmBudget(limit_mb=10_000, limit_workers=1)
    hot, once = _Member("hot"), _Member("once")
    _joined(budget, hot, once)
    _call(budget, hot)
    _call(budget, hot)
    budget.touch(once)
    assert once.warm_short and not budget.admit(once)
    assert hot.evicted == 0
