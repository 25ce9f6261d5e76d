"""The warm budget: how many idle workers all pools of one engine may hold between them.

An engine holds hundreds of services, most idle most of the time; a warm worker per pool for ever
would pin tens of GiB doing nothing. Idle workers (and starts meant to become idle) cost their
pool's `memory_mb` and one place against `warm_budget_mb` and `warm_budget_workers`; a pool keeps
its warm place while that worker serves a request, but further busy workers cost nothing here
(each pool's `max_workers` bounds them). When the idle workers are over either limit, pools lose
theirs in LRU-2 order: pools called at most once first, least recently called first, then pools
called repeatedly, by their second-to-last call. A one-off call to a pool of the long tail thus
never pushes out a pool with steady traffic (bench/warm_sim.py has the numbers). A pinned pool (`min_idle` set for its service in
`[services.X]`) keeps `min_idle` warm whatever the traffic: that floor is never evicted, and pinned
floors that do not fit in the budget are a configuration error. A pool whose starts fail is not
charged for its retries and never evicts anyone, so a service that cannot boot cannot take warmth
from the others.

Pools report here through the small `WarmMember` interface: a pool made at start-up and one added
while the engine runs join the same way (`join`).
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from engine import metrics
from engine.errors import ConfigError

#: The only values of `warm_budget_evictions_total{reason}`: over `warm_budget_mb`, over
#: `warm_budget_workers`, or idle longer than the pool's `scale_to_zero_after_s`.
EVICTION_REASONS = metrics.WARM_BUDGET_EVICTION_REASONS


def default_warm_budget_mb(meminfo: Path = Path("/proc/meminfo")) -> int:
    """A quarter of the machine's memory (MemTotal), or 1024 MB where that cannot be read."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return max(64, int(line.split()[1]) // 1024 // 4)
    except (OSError, ValueError, IndexError):
        pass
    return 1024


class WarmMember(Protocol):
    """What the budget needs from a pool."""

    name: str

    @property
    def warm_cost_mb(self) -> int: ...  # what one idle worker costs (the pool's memory_mb)

    @property
    def warm_want(self) -> int: ...  # idle workers it keeps while called (min_idle)

    @property
    def warm_floor(self) -> int: ...  # idle workers never evicted (pinned min_idle, else 0)

    @property
    def warm_held(self) -> int: ...  # idle workers plus starts meant to become idle

    @property
    def evictable(self) -> int: ...  # idle workers above the floor, stoppable now

    @property
    def warm_short(self) -> bool: ...  # holds fewer places than its warm target

    @property
    def failing(self) -> bool: ...

    def evict_idle(self) -> bool:
        """Stop its least recently used idle worker above the floor; False if it has none."""
        ...


@dataclass(frozen=True)
class PinnedDemand:
    """One pinned pool's floor, for the check at start-up."""

    service: str
    runtime: str
    min_idle: int
    memory_mb: int


class WarmBudget:
    """Idle workers of every pool against one limit in MB and one in workers, evicted LRU-2 first."""

    def __init__(self, limit_mb: int, limit_workers: int, *, second_call: bool = True) -> None:
        """`second_call`: evict by the time of each pool's second-to-last call (LRU-2: a pool called
        once, however recently, goes before one called repeatedly); False: by its last call (LRU)."""
        self.limit_mb = limit_mb
        self.limit_workers = limit_workers
        self.second_call = second_call
        # Least recently called first; a pool moves to the end when it is called.
        self._order: collections.OrderedDict[WarmMember, None] = collections.OrderedDict()
        # Each pool's (second-to-last call, last call, warm join), as ticks of one counter; -1: none.
        # Joining warm at start is not a call: it only orders pools nobody has called yet.
        self._calls: dict[WarmMember, tuple[int, int, int]] = {}
        self._tick = itertools.count()
        self._held: dict[WarmMember, int] = {}
        self.used_mb = 0
        self.used_workers = 0
        self.pinned_mb = 0
        self.pinned_workers = 0
        self._enforcing = False
        # Pinned floors checked at start whose pools have not joined yet: reserved for them.
        self._pending: dict[tuple[str, str], PinnedDemand] = {}
        metrics.warm_budget(self)

    # --- membership -----------------------------------------------------------------------

    def check_pinned(self, demands: Iterable[PinnedDemand]) -> None:
        """Pinned floors must fit the budget: else a ConfigError naming the pools and the numbers.

        Checked floors are reserved until their pools join, so pools joining before them do not
        take their room."""
        demands = [d for d in demands if d.min_idle > 0 and (d.service, d.runtime) not in self._pending]
        pending = list(self._pending.values())
        mb = self.pinned_mb + sum(d.min_idle * d.memory_mb for d in demands + pending)
        workers = self.pinned_workers + sum(d.min_idle for d in demands + pending)
        if mb <= self.limit_mb and workers <= self.limit_workers:
            self._pending.update({(d.service, d.runtime): d for d in demands})
            return
        listed = ", ".join(f"{d.service}/{d.runtime} (min_idle={d.min_idle} × memory_mb={d.memory_mb})"
                           for d in demands)
        raise ConfigError(
            f"pinned services need {mb} MB and {workers} idle workers kept warm, more than the warm budget "
            f"(warm_budget_mb={self.limit_mb}, warm_budget_workers={self.limit_workers}): {listed}"
            + (f", on top of {self.pinned_workers} pinned workers already served" if self.pinned_workers else "")
            + "; raise warm_budget_mb / warm_budget_workers, or lower min_idle in [services.NAME] "
              "(or remove it there, so the service is warm only while it is called)"
        )

    def join(self, member: WarmMember, service: str, runtime: str) -> bool:
        """Add a pool; True when it should warm up now (pinned, or its min_idle fits beside what is
        held and every pinned floor), else it stays cold until called."""
        floor = member.warm_floor
        if floor:
            self.check_pinned([PinnedDemand(service, runtime, floor, member.warm_cost_mb)])
            self._pending.pop((service, runtime), None)
            self.pinned_mb += floor * member.warm_cost_mb
            self.pinned_workers += floor
        self._held[member] = 0
        if floor:
            self._order[member] = None
            self._calls[member] = (-1, -1, next(self._tick))
            return True
        # Room left once every pinned floor is counted, held or not yet.
        unheld = {m: max(0, m.warm_floor - self._held[m]) for m in self._order if m.warm_floor}
        pending = self._pending.values()
        reserved_workers = self.used_workers + sum(unheld.values()) + sum(d.min_idle for d in pending)
        reserved_mb = (self.used_mb + sum(n * m.warm_cost_mb for m, n in unheld.items())
                       + sum(d.min_idle * d.memory_mb for d in pending))
        want = member.warm_want
        warm = (want > 0 and reserved_mb + want * member.warm_cost_mb <= self.limit_mb
                and reserved_workers + want <= self.limit_workers)
        self._order[member] = None
        self._calls[member] = (-1, -1, next(self._tick) if warm else -1)
        if not warm:
            self._order.move_to_end(member, last=False)  # never called: the first to lose warmth
        return warm

    def leave(self, member: WarmMember) -> None:
        held = self._held.pop(member, 0)
        self._order.pop(member, None)
        self._calls.pop(member, None)
        self.used_workers -= held
        self.used_mb -= held * member.warm_cost_mb
        if member.warm_floor:
            self.pinned_mb -= member.warm_floor * member.warm_cost_mb
            self.pinned_workers -= member.warm_floor

    # --- traffic and accounting -----------------------------------------------------------

    def touch(self, member: WarmMember) -> None:
        """The pool was called: it is now the most recently used."""
        if member in self._order:
            self._order.move_to_end(member)
            _, last, joined = self._calls[member]
            self._calls[member] = (last, next(self._tick), joined)

    def eviction_order(self) -> list[WarmMember]:
        """Pools in the order they lose idle workers: by last call (LRU), or with `second_call` by the
        call before it, so one-off calls to the long tail never push out a pool called again and again."""
        if not self.second_call:
            return list(self._order)
        return sorted(self._order, key=self._calls.__getitem__)

    def sync(self, member: WarmMember) -> None:
        """The pool's idle workers or warm starts changed: recount it, and evict LRU-first if over."""
        if member not in self._held:
            return
        self._recount(member)
        if not self._enforcing and self._over():
            self._enforcing = True
            try:
                for victim in self.eviction_order():
                    while self._over() and victim.evictable > 0:
                        reason = "memory" if self.used_mb > self.limit_mb else "workers"
                        if not self._evict(victim, reason):
                            break
                    if not self._over():
                        break
            finally:
                self._enforcing = False

    def admit(self, member: WarmMember) -> bool:
        """Room for one more warm worker of `member`: free, or, while it holds fewer places than its
        warm target, made by evicting pools before it in the eviction order (a pinned pool's floor may evict
        anyone above their own floor). A failing pool, and a pool replacing a worker it is using
        (already at its target), only get free room: taking a neighbour's only warm worker for a
        second one would pass the cold start on to the neighbour."""
        cost = member.warm_cost_mb
        if self._fits(cost):
            return True
        if member.failing or member not in self._order or not member.warm_short:
            return False
        pinned_floor = member.warm_floor > 0 and self._held[member] < member.warm_floor
        victims: list[WarmMember] = []
        freed_mb = freed_workers = 0
        for other in self.eviction_order():
            if other is member:
                if not pinned_floor:
                    break
                continue
            if other.evictable > 0:
                victims.append(other)
                freed_workers += other.evictable
                freed_mb += other.evictable * other.warm_cost_mb
        if not (self.used_mb - freed_mb + cost <= self.limit_mb
                and self.used_workers - freed_workers + 1 <= self.limit_workers):
            return False
        for victim in victims:
            while not self._fits(cost) and victim.evictable > 0:
                reason = "memory" if self.used_mb + cost > self.limit_mb else "workers"
                if not self._evict(victim, reason):
                    break
            if self._fits(cost):
                return True
        return self._fits(cost)

    def scaled_to_zero(self, count: int) -> None:
        """A pool stopped `count` idle workers after scale_to_zero_after_s without a call."""
        metrics.warm_budget_evicted("scale_to_zero", count)

    # --- internals ------------------------------------------------------------------------

    def _fits(self, cost_mb: int) -> bool:
        return self.used_mb + cost_mb <= self.limit_mb and self.used_workers + 1 <= self.limit_workers

    def _over(self) -> bool:
        return self.used_mb > self.limit_mb or self.used_workers > self.limit_workers

    def _recount(self, member: WarmMember) -> None:
        held = member.warm_held
        delta = held - self._held[member]
        if delta:
            self._held[member] = held
            self.used_workers += delta
            self.used_mb += delta * member.warm_cost_mb

    def _evict(self, victim: WarmMember, reason: str) -> bool:
        if not victim.evict_idle():
            return False
        metrics.warm_budget_evicted(reason, 1)
        self._recount(victim)
        return True
