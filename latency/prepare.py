"""Jobs from subnets: what each target runs, built on the machine that holds the supernet.

For `cpu`/`gpu` a job carries the standalone subnet as a serialized `jax.export` module lowered
for both CPU and CUDA, its weights as arguments (a few tens of KB per job); for `tflite` the
subnet is converted with its real weights (fp32, or int8 calibrated on training images) and
the job points to the `.tflite` file. Block jobs hold a single inverted-residual layer, for the
per-layer lookup-table baseline.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from hwnas.latency.features import block_key
from hwnas.latency.jobs import Job
from hwnas.latency.targets import Target
from hwnas.supernet.convert import to_tflite
from hwnas.supernet.extract import StandaloneBlock, standalone
from hwnas.supernet.space import LayerShape, SearchSpace, Subnet

__all__ = ["JobBuilder", "block_key", "block_variables", "export_blob"]

REPRESENTATIVE = 32


def export_blob(module: nn.Module, variables: dict, input_shape: tuple[int, ...]) -> str:
    """base64 of a serialized `jax.export` of `module.apply(variables, x)`, weights as args."""
    leaves, tree = jax.tree.flatten(jax.eval_shape(lambda: variables))

    def forward(flat: list[jax.Array], x: jax.Array) -> Any:
        return module.apply(jax.tree.unflatten(tree, flat), x)

    specs = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in leaves]
    x = jax.ShapeDtypeStruct(input_shape, np.float32)
    exported = jax.export.export(jax.jit(forward), platforms=("cpu", "cuda"))(specs, x)
    return base64.b64encode(exported.serialize()).decode("ascii")


def block_variables(module: nn.Module, shape: tuple[int, ...]) -> dict:
    """Weights for a lone block, drawn by numpy (a block's latency does not depend on its
    values): kernels normal with a variance of 1 / fan-in, BatchNorm as Flax initialises it
    (scale and variance 1, bias and mean 0). Only the shapes come from JAX (`eval_shape`):
    Flax's `init` would compile an XLA program per initialiser, most of a block job's time
    (24 blocks of the tiny space: 28 s; one `jax.jit(init)` a block: 21 s)."""
    x = jax.ShapeDtypeStruct(shape, np.float32)
    abstract = jax.eval_shape(module.init, jax.random.key(0), x)
    rng = np.random.default_rng(0)

    def draw(path: tuple[Any, ...], leaf: jax.ShapeDtypeStruct) -> np.ndarray:
        name = path[-1].key
        if name in ("scale", "var"):
            return np.ones(leaf.shape, leaf.dtype)
        if name in ("bias", "mean"):
            return np.zeros(leaf.shape, leaf.dtype)
        fan_in = int(np.prod(leaf.shape[:-1]))  # a depthwise kernel (k, k, 1, c): k * k
        return (rng.standard_normal(leaf.shape) / np.sqrt(fan_in)).astype(leaf.dtype)

    return dict(jax.tree_util.tree_map_with_path(draw, abstract))


class JobBuilder:
    """Builds jobs for one target from a supernet's weights; tflite files go to `model_dir`
    (jobs name them relative to its parent, the folder of the job file)."""

    def __init__(
        self,
        space: SearchSpace,
        variables: dict,
        target: Target,
        model_dir: Path,
        representative: Callable[[int], np.ndarray] | None = None,
        run: str = "",
        weights: str = "trained",
    ) -> None:
        self.run, self.weights = run, weights
        self.space, self.variables, self.target = space, variables, target
        self.model_dir, self.representative = model_dir, representative

    def _payload(
        self,
        module: nn.Module,
        variables: dict,
        shape: tuple[int, ...],
        sub_for_tflite: Subnet | None,
    ) -> dict:
        if self.target.kind != "tflite":
            nbytes = sum(a.nbytes for a in jax.tree.leaves(variables))
            blob = export_blob(module, variables, shape)
            return {"type": "jax-export", "blob": blob, "weight_bytes": int(nbytes)}
        data = self._tflite(sub_for_tflite, module, variables, shape)
        digest = hashlib.sha256(data).hexdigest()
        name = f"{digest[:32]}.tflite"
        (self.model_dir / name).write_bytes(data)
        return {"type": "tflite", "path": f"{self.model_dir.name}/{name}", "sha256": digest}

    def _tflite(
        self, subnet: Subnet | None, module: nn.Module, variables: dict, shape: tuple[int, ...]
    ) -> bytes:
        precision = self.target.precision
        rep = None
        if precision == "int8" and subnet is None:  # a lone block: random activations
            rep = list(np.random.default_rng(0).normal(size=(REPRESENTATIVE, *shape[1:])))
        elif precision == "int8":
            if self.representative is None:
                raise ValueError("int8 subnet jobs need representative images to calibrate on")
            rep = list(self.representative(shape[1])[:REPRESENTATIVE])
        return to_tflite(self.space, subnet, variables, precision, rep, module=module).flatbuffer

    def subnet_job(self, subnet: Subnet) -> Job:
        module, variables = standalone(self.space, subnet, self.variables)
        r = subnet.resolution
        shape = (self.target.batch, r, r, self.space.in_channels)
        payload = self._payload(module, variables, shape, subnet)
        return Job(uuid.uuid4().hex, self.target, subnet.key, subnet.to_dict(), "subnet",
                   payload, self.run, self.space.key, self.weights)  # fmt: skip

    def block_job(self, layer: LayerShape) -> Job:
        module = StandaloneBlock(layer)
        shape = (self.target.batch, layer.h_in, layer.h_in, layer.c_in)
        variables = block_variables(module, shape)
        payload = self._payload(module, variables, shape, None)
        key = block_key(layer)
        return Job(uuid.uuid4().hex, self.target, key, {"block": key}, "block", payload,
                   self.run, self.space.key, self.weights)  # fmt: skip
