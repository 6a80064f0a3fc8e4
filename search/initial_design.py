"""The first trials of a model-based search: subnets spread evenly over the size range.

TPE starts from random trials, and uniform sampling piles subnets up in the middle of the size
range (a sum of many independent choices), so the ends of the front (the fastest subnets and
the most accurate ones) are found late. Instead, a new study's first `n` trials are enqueued
at size levels 0, 1/(n-1), ..., 1 of `SearchSpace.sample_sized`: level 0 is the smallest
subnet, level 1 the largest, and the rest lie between. TPE counts them as its start-up trials.
Random search is left alone: it is the baseline.
"""

from __future__ import annotations

import numpy as np
import optuna

from hwnas.search.objective import subnet_params
from hwnas.supernet.space import SearchSpace, Subnet

NOT_FOR = ("random",)


def initial_subnets(space: SearchSpace, n: int, seed: int | None) -> list[Subnet]:
    """`n` distinct subnets at evenly spaced size levels (fewer when the space is tiny)."""
    rng = np.random.default_rng(seed)
    out: dict[str, Subnet] = {}
    for level in np.linspace(0.0, 1.0, n):
        for _ in range(20):  # a level may repeat a subnet in a small space: draw again
            s = space.sample_sized(rng, level)
            if s.key not in out:
                out[s.key] = s
                break
    return list(out.values())


def enqueue_initial(
    study: optuna.Study, space: SearchSpace, sampler: str, n: int, seed: int | None
) -> int:
    """Enqueue the initial design into a study that has no trials yet; returns how many."""
    if sampler in NOT_FOR or n <= 0 or study.get_trials(deepcopy=False):
        return 0
    subnets = initial_subnets(space, n, seed)
    for s in subnets:
        study.enqueue_trial(subnet_params(space, s), skip_if_exists=True)
    return len(subnets)
