"""Validation accuracy of many subnets with the supernet's weights, fast enough for a search.

`hwnas subnet` recalibrates BatchNorm batch by batch and then predicts batch by batch (about ten
XLA calls). A search evaluates hundreds of subnets, so here one jitted function per resolution
does all of a trial's work in a single call: the subnet's BatchNorm moments on the same fixed
calibration batches (`lax.map` over them, averaged, exactly as `Evaluator.recalibrate`), then
its accuracy on the whole validation split (never the test split). The subnet arrives as `Arch`
arrays, so no subnet recompiles anything; results are cached by subnet key.

What an oracle needs (the weights, the calibration batches and the validation split) is an
`OracleInputs`: a search's parent process prepares it once and writes it as one `.npz` file,
and each of its trial workers reads that file instead of decoding the run's data and reading
its checkpoint again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from hwnas.supernet.compile_cache import enable_compile_cache
from hwnas.supernet.data import Dataset
from hwnas.supernet.evaluate import batch_moments, calibration_batches
from hwnas.supernet.model import SuperNet, arch_arrays
from hwnas.supernet.space import SearchSpace, Subnet
from hwnas.supernet.train_config import TrainConfig
from hwnas.supernet.train_step import resize_images

_VAR = "variables/"


@dataclass(frozen=True, eq=False)
class OracleInputs:
    """The supernet's weights, its BN calibration batches (uint8, `[n, B, H, W, 3]`, the
    training images `Evaluator.recalibrate` uses) and the validation split (uint8 images,
    int32 labels)."""

    variables: dict
    calibration: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray

    @classmethod
    def of(cls, variables: dict, data: Dataset, config: TrainConfig) -> OracleInputs:
        """The inputs of a run trained with `config` on `data`."""
        batches = calibration_batches(
            data.x_train, config.recalib_batches, config.batch_size, config.seed
        )
        return cls(variables, np.stack(batches), data.x_val, data.y_val)

    def write(self, path: str | Path) -> Path:
        """One uncompressed `.npz` (no pickles), written whole or not at all."""
        path = Path(path)
        flat = flatten_dict(self.variables, sep="/")
        arrays: dict[str, Any] = {_VAR + k: np.asarray(v) for k, v in flat.items()}
        arrays.update(calibration=self.calibration, x_val=self.x_val, y_val=self.y_val)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as f:
            np.savez(f, **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def read(cls, path: str | Path) -> OracleInputs:
        with np.load(path, allow_pickle=False) as z:
            flat = {k[len(_VAR) :]: z[k] for k in z.files if k.startswith(_VAR)}
            return cls(unflatten_dict(flat, sep="/"), z["calibration"], z["x_val"], z["y_val"])


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

    def __init__(self, space: SearchSpace, inputs: OracleInputs) -> None:
        self.space = space
        self._variables = jax.device_put(inputs.variables)
        self._calibration = inputs.calibration
        self._x_val, self._y_val = inputs.x_val, inputs.y_val
        self._fn = make_accuracy_fn(SuperNet(space))
        self._inputs: dict[int, tuple] = {}
        self._cache: dict[str, tuple[float, float, float]] = {}

    @classmethod
    def read(cls, space: SearchSpace, path: str | Path) -> AccuracyOracle:
        """The oracle of the inputs written to `path` (`OracleInputs.write`), compiled for
        every resolution (through XLA's persistent cache: a worker process compiles what its
        siblings compiled before only once)."""
        enable_compile_cache()
        oracle = cls(space, OracleInputs.read(path))
        oracle.warm_up()
        return oracle

    def _inputs_for(self, r: int) -> tuple:
        if r not in self._inputs:
            calib = np.stack([resize_images(b, r) for b in self._calibration])
            val = resize_images(self._x_val, r)
            self._inputs[r] = tuple(jax.device_put((calib, val, self._y_val)))
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
        return len(self._y_val)

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
