"""What each training step sees, as pure functions of (seed, epoch, step): the data order and
the step's resolution. Both loaders (in memory and streaming) and the training step share
them, so a run is the same whichever loader feeds it, and a resumed run repeats exactly what an
uninterrupted one does. numpy only: grain's worker processes import this, not JAX.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=2)
def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the `n` training images in epoch `epoch`."""
    order = np.random.default_rng((seed, 10_000 + epoch)).permutation(n)
    order.flags.writeable = False
    return order


def step_resolution(resolutions: tuple[int, ...], seed: int, step: int) -> int:
    """The resolution global step `step` trains at (the first draw of the step's generator,
    as `train.step_subnets` draws it)."""
    return int(np.random.default_rng((seed, step)).choice(resolutions))
