"""Where the models a latency measurement runs come from: a trained run's supernet, or a
space alone with initialised weights (a model's speed does not depend on what its weights
learned, so a space can be measured before any training)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hwnas.db.models import Run
from hwnas.search.services.recorded_runs import run_dataset
from hwnas.supernet.space import SearchSpace

if TYPE_CHECKING:
    from hwnas.supernet.data import Dataset

TRAINED, INIT = "trained", "init"


class RunContext:
    """A finished run's space and weights, and its training images for int8 calibration."""

    weights = TRAINED

    def __init__(self, run: Run) -> None:
        from hwnas.supernet.train_loop import load_variables

        self.run = run
        self.name = run.name
        self.space = SearchSpace.from_dict(run.space)
        self.variables = load_variables(self.space, run.checkpoint)
        self._data: Dataset | None = None

    def representative(self, resolution: int) -> np.ndarray:
        from hwnas.supernet.train_step import resize_images

        if self._data is None:
            self._data = run_dataset(self.run)
        x = self._data.x_train
        idx = np.random.default_rng(7).permutation(len(x))[:64]
        return resize_images(x[idx], resolution)


class SpaceContext:
    """A space with its supernet's initialised weights; int8 models are calibrated on
    synthetic inputs of the right shape (normal noise, as the normalised images)."""

    weights = INIT
    name = ""

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        from hwnas.supernet.train_loop import init_variables

        self.space = space
        self.variables = init_variables(space, seed)

    def representative(self, resolution: int) -> np.ndarray:
        rng = np.random.default_rng(7)
        shape = (64, resolution, resolution, self.space.in_channels)
        return rng.normal(0.0, 1.0, shape).astype(np.float32)
