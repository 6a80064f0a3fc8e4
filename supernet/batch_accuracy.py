"""Validation accuracy of many subnets with the supernet's weights, fast enough for a search.

`hwnas subnet` recalibrates BatchNorm batch by batch and then predicts batch by batch (about ten
XLA calls). A search evaluates hundreds of subnets, so here one jitted function per resolution
does all of a trial's work in a single call: the subnet's BatchNorm moments on the same fixed
calibration batches (`lax.map` over them, averaged, exactly as `Evaluator.recalibrate`), then
its accuracy on the whole validation split (never the test split). The subnet arrives as `Arch`
arrays, so no subnet recompiles anything; results are cached by subnet key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from hwnas.supernet.data import Dataset
from hwnas.supernet.evaluate import batch_moments, resized_calibration
from hwnas.supernet.model import SuperNet, arch_arrays
from hwnas.supernet.space import SearchSpace, Subnet
from hwnas.supernet.train_config import TrainConfig
from hwnas.supernet.train_loop import load_variables
from hwnas.supernet.train_step import resize_images


def make_accuracy_fn(net: SuperNet) -> Callable:
    """`(variables, arch, calib[n, B, ...], x, y) -> correct counts on the even and the odd
    validation images`, jitted."""

    def correct(variables, arch, calib, x, y):
        per_batch = jax.lax.map(lambda b: batch_moments(net, variables, b, arch), calib)
        stats = jax.tree.map(lambda t: jnp.mean(t, axis=0), per_batch)
        recalibrated = {"params": variables["params"], "batch_stats": stats}
        logits = net.apply(recalibrated, x, arch, train=False)
        hit = jnp.argmax(logits, -1) == y
        return jnp.stack([jnp.sum(hit[0::2]), jnp.sum(hit[1::2])])

    return jax.jit(correct)


class AccuracyOracle:
    """Validation accuracy of any subnet of `space`, BatchNorm recalibrated as in training."""

    def __init__(
        self, space: SearchSpace, variables: dict, data: Dataset, config: TrainConfig
    ) -> None:
        self.space = space
        self._variables = jax.device_put(variables)
        self._data = data
        self._config = config
        self._fn = make_accuracy_fn(SuperNet(space))
        self._inputs: dict[int, tuple] = {}
        self._cache: dict[str, tuple[float, float, float]] = {}

    @classmethod
    def load(
        cls, space: SearchSpace, checkpoint: str | Path, data: Dataset, config: TrainConfig
    ) -> AccuracyOracle:
        """The oracle of a trained supernet: its weights read from `checkpoint` (verified by
        its hash), `data` as the run was split, compiled for every resolution."""
        oracle = cls(space, load_variables(space, checkpoint), data, config)
        oracle.warm_up()
        return oracle

    def _inputs_for(self, r: int) -> tuple:
        if r not in self._inputs:
            c = self._config
            calib = np.stack(resized_calibration(self._data.x_train, r, c))
            val = resize_images(self._data.x_val, r)
            self._inputs[r] = tuple(jax.device_put((calib, val, self._data.y_val)))
        return self._inputs[r]

    def __call__(self, subnet: Subnet) -> float:
        return self.evaluate(subnet)[0]

    def evaluate(self, subnet: Subnet) -> tuple[float, float, float]:
        """Accuracy on the validation split, and on its even and its odd images (the two
        halves whose agreement bounds how well any ranking of subnets can be judged)."""
        key = subnet.key
        if key not in self._cache:
            calib, x, y = self._inputs_for(subnet.resolution)
            arch = arch_arrays(self.space, subnet)
            even, odd = (int(v) for v in self._fn(self._variables, arch, calib, x, y))
            n_even = (len(y) + 1) // 2
            self._cache[key] = ((even + odd) / len(y), even / n_even, odd / (len(y) - n_even))
        return self._cache[key]

    @property
    def n_val(self) -> int:
        """Validation images: one of them is 1 / n_val of accuracy, the finest step it has."""
        return len(self._data.y_val)

    def clear_cache(self) -> None:
        """Forget every evaluated subnet (a benchmark's runs each pay for their own)."""
        self._cache.clear()

    def seconds_per_subnet(self) -> float:
        """Wall time of one evaluation of the largest subnet (compiled, not cached)."""
        subnet = self.space.largest()
        calib, x, y = self._inputs_for(subnet.resolution)
        arch = arch_arrays(self.space, subnet)
        jax.block_until_ready(self._fn(self._variables, arch, calib, x, y))  # compiled
        t0 = time.perf_counter()
        jax.block_until_ready(self._fn(self._variables, arch, calib, x, y))
        return time.perf_counter() - t0

    def warm_up(self) -> None:
        """Compile for every resolution now (a progress bar then counts real trials)."""
        for r in self.space.resolutions:
            s = self.space.smallest()
            self(self.space.subnet(r, s.depths, s.kernels, s.expands))
