"""One account's worker quota, shared by the pools of all its deployed environments.

(Not the warm budget of engine/warmth.py, which bounds idle workers engine-wide by memory.)

A pool holds a place from the moment it decides to start a worker until the backend says that
worker is gone (alive, starting or being removed all count), so the account never has more
containers than its quota, however its requests are spread over environments. A pool that needs a
worker for a waiting request while the quota is full may stop one idle worker of a sibling pool
(one at a time per account); otherwise the request waits its `acquire_timeout_s` and the 503 then
names the quota.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.pool import Pool
    from engine.worker import Worker


class WorkerQuota:
    """The workers all pools of one owner (an account) may hold at once: `limit`."""

    def __init__(self, owner: str, limit: int) -> None:
        self.owner = owner
        self.limit = limit
        self.pools: set[Pool] = set()
        self._evicting: set[Worker] = set()  # idle workers stopped to make room, until removed

    def held(self) -> int:
        return sum(p.held for p in self.pools)

    def room(self, asking: Pool | None = None, urgent: bool = True) -> bool:
        """Whether a start may take a place now; a start that is not `urgent` (keeping `min_idle`)
        leaves the place to a sibling pool whose requests are waiting for one."""
        if self.held() >= self.limit:
            return False
        return urgent or not any(p.wants_workers for p in self.pools if p is not asking)

    def describe(self) -> str:
        return (f"account {self.owner} has {self.held()} workers across its environments, the most "
                f"max_workers_per_account={self.limit} allows")

    def make_room(self, asking: Pool) -> None:
        """Stop the oldest idle worker of another of the account's pools, unless one is already going."""
        if self._evicting:
            return
        donors = [p for p in self.pools if p is not asking and p.idle_count > 0]
        if not donors:
            return
        donor = max(donors, key=lambda p: p.idle_count)
        worker = donor.evict_for_quota()
        if worker is not None:
            self._evicting.add(worker)

    def idle_appeared(self, pool: Pool) -> None:
        """A worker went idle: if the quota is full and a sibling's requests wait, give it the place."""
        if self.held() < self.limit:
            return
        for other in self.pools:
            if other is not pool and other.wants_workers:
                self.make_room(other)
                return

    def freed(self, worker: Worker | None = None) -> None:
        """A place came free: every pool of the account retries the starts it was denied."""
        if worker is not None:
            self._evicting.discard(worker)
        for pool in sorted(self.pools, key=lambda p: not p.wants_workers):  # waiting requests first
            pool.retry_starts()
