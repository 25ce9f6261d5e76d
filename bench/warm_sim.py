"""`python -m bench.warm_sim`: the warm budget's policy replayed on request traces, without containers.

What cold-start fraction the 90/10 mix of `--many` can have at all, and how close the engine's
own policy (`engine/warmth.py`, driven here through its real `WarmBudget`) comes to it:

- **floor**: the best any policy that decides from the past can do when requests pick services
  independently at fixed rates: keep warm the `places` services with the highest rates, so the
  cold fraction is the rate of all the others (1 - the `places` largest probabilities).
- **engine**: requests one at a time through `WarmBudget` with one place per service (`min_idle`
  1): a request finds its service warm or starts one (cold); its worker is idle afterwards and the
  budget evicts over the limit, as the engine does.

Tails: `even` (the bench's: the 90 % of services outside the hot set share 10 % of the requests
evenly) or `zipf:S` (the same 10 %, spread over them by Zipf's law with exponent S).
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence

from engine.warmth import WarmBudget


class _Pool:
    """The budget's view of one service with min_idle 1 and one worker at most."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.idle = 0

    warm_cost_mb = 1
    warm_want = 1
    warm_floor = 0
    failing = False

    @property
    def warm_held(self) -> int:
        return self.idle

    @property
    def evictable(self) -> int:
        return self.idle

    @property
    def warm_short(self) -> bool:
        return self.idle < 1

    def evict_idle(self) -> bool:
        if not self.idle:
            return False
        self.idle = 0
        return True


def mix(n: int, tail: str) -> list[float]:
    """Each service's share of requests: 10 % of services (at least 1) get 90 %, the rest 10 %."""
    hot = max(1, n // 10)
    rest = n - hot
    if tail == "even":
        weights = [1.0] * rest
    elif tail.startswith("zipf:"):
        s = float(tail.split(":", 1)[1])
        weights = [1.0 / (rank ** s) for rank in range(1, rest + 1)]
    else:
        raise ValueError(f"tail must be even or zipf:S, not {tail!r}")
    total = sum(weights)
    return [0.9 / hot] * hot + [0.1 * w / total for w in weights]


def floor(probabilities: Sequence[float], places: int) -> float:
    """The cold fraction of the best policy that knows the rates: all but the top `places` are cold."""
    return 1.0 - sum(sorted(probabilities, reverse=True)[:places])


def engine_policy(probabilities: Sequence[float], places: int, requests: int, seed: int = 12,
                  second_call: bool = True) -> float:
    """Cold fraction of `requests` drawn from `probabilities` through the engine's WarmBudget."""
    rng = random.Random(seed)
    budget = WarmBudget(limit_mb=10**9, limit_workers=places, second_call=second_call)
    pools = [_Pool(f"s{i}") for i in range(len(probabilities))]
    for pool in pools:
        budget.join(pool, pool.name, "python")
    picks = rng.choices(range(len(pools)), weights=probabilities, k=requests)
    warmup = requests // 5  # the first fifth fills the budget; counted from then on
    cold = 0
    for i, index in enumerate(picks):
        pool = pools[index]
        budget.touch(pool)
        if pool.idle:
            pool.idle -= 1  # busy while it serves, then idle again below
        elif i >= warmup:
            cold += 1
        pool.idle = 1
        budget.sync(pool)
    return cold / (requests - warmup)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.warm_sim", description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, nargs="+", default=[40, 500])
    parser.add_argument("--tails", nargs="+", default=["even", "zipf:1.0", "zipf:1.5", "zipf:2.0"])
    parser.add_argument("--budget-fraction", type=float, default=0.25, help="places as a fraction of the services")
    parser.add_argument("--requests", type=int, default=200_000)
    args = parser.parse_args(argv)
    print("| services | places | tail | floor (any policy) | LRU | LRU-2 (engine default) |")
    print("|---|---|---|---|---|---|")
    for n in args.services:
        places = max(1, int(n * args.budget_fraction))
        for tail in args.tails:
            probabilities = mix(n, tail)
            print(f"| {n} | {places} | {tail} | {floor(probabilities, places):.2%} | "
                  f"{engine_policy(probabilities, places, args.requests, second_call=False):.2%} | "
                  f"{engine_policy(probabilities, places, args.requests):.2%} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
