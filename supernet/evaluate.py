"""Evaluation of subnets with the supernet's weights: BN recalibration and accuracy.

BatchNorm statistics accumulated while training many subnets fit none of them, so before a
subnet is evaluated its statistics are recomputed on a few training batches (as Once-for-All
does). Recalibration is a pure function `(variables, arch, batches) -> batch_stats`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from hwnas.supernet.model import Arch, SuperNet
from hwnas.supernet.train_config import TrainConfig
from hwnas.supernet.train_step import resize_images

EVAL_BATCH = 256
EVAL_PIXELS = 64 * 224 * 224  # an evaluation batch holds at most this many input pixels


def eval_batch(resolution: int) -> int:
    """Images per evaluation batch at `resolution`: 256 up to 112 px, 64 at 224 px (so the
    activations of a forward pass stay within a few hundred MB per layer)."""
    return max(1, min(EVAL_BATCH, EVAL_PIXELS // (resolution * resolution)))


@dataclass(frozen=True)
class Evaluator:
    """Jitted forward passes of one supernet (compiled once per resolution)."""

    logits: Callable
    moments: Callable

    @classmethod
    def for_net(cls, net: SuperNet) -> Evaluator:
        def logits(variables, x, arch):
            return net.apply(variables, x, arch, train=False)

        return cls(jax.jit(logits), jax.jit(lambda v, x, arch: batch_moments(net, v, x, arch)))

    def recalibrate(self, variables: dict, arch: Arch, batches: Sequence[np.ndarray]) -> dict:
        """BatchNorm statistics for `arch`: the mean of its batch moments over `batches`."""
        total = None
        for x in batches:
            m = self.moments(variables, x, arch)
            total = m if total is None else jax.tree.map(jnp.add, total, m)
        return jax.tree.map(lambda t: t / len(batches), total)

    def predict(self, variables: dict, arch: Arch, x: np.ndarray) -> np.ndarray:
        """Logits for all of `x`, in fixed-size batches (the last one padded)."""
        out, n = [], eval_batch(x.shape[1])
        for i in range(0, len(x), n):
            chunk = x[i : i + n]
            pad = n - len(chunk)
            if pad:
                chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
            out.append(np.asarray(self.logits(variables, chunk, arch))[: n - pad])
        return np.concatenate(out)

    def accuracy(self, variables: dict, arch: Arch, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(np.argmax(self.predict(variables, arch, x), -1) == y))

    def subnet_accuracy(
        self, params: dict, batch_stats: dict, arch: Arch, calib: Sequence[np.ndarray], x, y
    ) -> float:
        """Recalibrate BN for `arch` on `calib`, then measure accuracy on (x, y)."""
        variables = {"params": params, "batch_stats": batch_stats}
        stats = self.recalibrate(variables, arch, calib)
        return self.accuracy({"params": params, "batch_stats": stats}, arch, x, y)


def batch_moments(net: SuperNet, variables: dict, x, arch: Arch) -> dict:
    """BatchNorm moments of `arch` on the batch `x` (the tree of `batch_stats`)."""
    _, state = net.apply(variables, x, arch, train=True, mutable=["moments"])
    return jax.tree.map(lambda t: t[0], state["moments"], is_leaf=_is_tuple)


def calibration_batches(images: np.ndarray, n_batches: int, batch: int, seed: int) -> list:
    """A fixed set of training batches for BN recalibration."""
    order = np.random.default_rng((seed, 77)).permutation(len(images))
    n = min(n_batches, max(len(images) // batch, 1))
    return [images[order[i * batch : (i + 1) * batch]] for i in range(n)]


def _is_tuple(node) -> bool:
    return isinstance(node, tuple)


def resized_calibration(images_u8: np.ndarray, resolution: int, config: TrainConfig) -> list:
    """The BN recalibration batches of `config` from uint8 images, resized to `resolution`
    batch by batch (the same images as resizing the whole set first)."""
    batches = calibration_batches(
        images_u8, config.recalib_batches, config.batch_size, config.seed
    )
    return [resize_images(b, resolution) for b in batches]
