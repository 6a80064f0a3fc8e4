"""Anchors: subnets a target measured before, measured again beside new ones, so that the new
measurements come out in the unit of the old (`latency/drift.py` divides every visit by the
anchors' drift against their stored medians).

On this project's shared 2-core machine the same demo subnets measured 0.9x and 1.3x their
earlier `cpu` medians a minute apart, the whole set alike: without anchors, a front checked
against its predictions, or a second `hwnas measure` joining a predictor's data, measured the
machine's pace more than the models.
"""

from __future__ import annotations

import numpy as np

from hwnas.db.session import Database
from hwnas.latency.targets import Target
from hwnas.search.output import UserError
from hwnas.search.services.prediction import load_target_data
from hwnas.supernet.space import SearchSpace, Subnet


def anchors(
    db: Database, space: SearchSpace, target: Target, subnets: list[Subnet], n: int
) -> tuple[list[Subnet], list[float]]:
    """Up to `n` subnets measured before on `target` (of `space`, not among `subnets`),
    nearest in MACs to the spread of `subnets`' MACs, and their stored medians; none where
    the target has measured nothing of `space`."""
    try:
        data = load_target_data(db, target, space.key)
    except UserError:  # nothing measured yet on this target and space
        return [], []
    own = {s.key for s in subnets}
    pool = [(s, ms) for s, ms in zip(data.subnets, data.latency_ms, strict=True)
            if s.key not in own]  # fmt: skip
    if not pool or not subnets:
        return [], []
    have = np.log([space.cost(s).macs for s, _ in pool])
    want = np.quantile(np.log([space.cost(s).macs for s in subnets]),
                       np.linspace(0, 1, n))  # fmt: skip
    picked: list[int] = []
    for w in want:
        for i in np.argsort(np.abs(have - w), kind="stable"):
            if i not in picked:
                picked.append(int(i))
                break
    return [pool[i][0] for i in picked], [float(pool[i][1]) for i in picked]
