"""Supernet training: the sandwich rule with in-place distillation (BigNAS).

Each step trains the largest subnet on the labels and the smallest plus `n_random` random
subnets on the largest's soft predictions, all at one resolution sampled for the step (as
Once-for-All samples one image size per batch), and applies the summed gradients once. The
subnets of a step run in one `lax.scan`, so a step compiles once per resolution whatever the
subnets. Data order comes from `(seed, epoch)` and subnets from `(seed, step)`, so a resumed run
repeats exactly what an uninterrupted one does.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from hwnas.supernet.model import Arch, SuperNet, arch_arrays
from hwnas.supernet.order import epoch_order
from hwnas.supernet.sorting import sort_channels
from hwnas.supernet.space import SearchSpace, Subnet
from hwnas.supernet.train_config import TrainConfig

MEAN, STD = 0.5, 0.25  # input normalisation of [0, 1] pixels (part of the export contract)


class TrainState(NamedTuple):
    step: jax.Array
    params: Any
    batch_stats: Any
    opt_state: Any


def make_optimizer(config: TrainConfig, steps_per_epoch: int) -> optax.GradientTransformation:
    total = max(config.epochs * steps_per_epoch, 1)
    warmup = min(config.warmup_epochs * steps_per_epoch, total - 1)
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, warmup, total, end_value=config.learning_rate * 0.01
    )
    return optax.adamw(schedule, weight_decay=config.weight_decay)


def create_train_state(net: SuperNet, tx: optax.GradientTransformation, seed: int) -> TrainState:
    space = net.space
    x = jnp.zeros((1, space.resolutions[-1], space.resolutions[-1], space.in_channels))
    arch = arch_arrays(space, space.largest())
    variables = jax.jit(lambda k: net.init(k, x, arch, train=False))(jax.random.key(seed))
    params = variables["params"]
    return TrainState(jnp.zeros((), jnp.int32), params, variables["batch_stats"], tx.init(params))


def make_train_step(net: SuperNet, tx: optax.GradientTransformation) -> Callable:
    """`train_step(state, x, y, archs) -> (state, metrics)`; `archs` stacks the step's subnets,
    the teacher (largest) first."""

    def subnet_loss(params, batch_stats, x, y, arch, teacher, is_teacher):
        logits, updates = net.apply(
            {"params": params, "batch_stats": batch_stats},
            x,
            arch,
            train=True,
            mutable=["batch_stats"],
        )
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        kd = optax.softmax_cross_entropy(logits, teacher).mean()
        return jnp.where(is_teacher, ce, kd), (logits, updates["batch_stats"])

    grad_fn = jax.value_and_grad(subnet_loss, has_aux=True)

    def train_step(state: TrainState, x, y, archs: Arch):
        n = archs.mid.shape[0]

        def body(carry, inputs):
            grads, teacher, batch_stats = carry
            arch, is_teacher = inputs
            (loss, (logits, batch_stats)), g = grad_fn(
                state.params, batch_stats, x, y, arch, teacher, is_teacher
            )
            soft = jax.nn.softmax(lax.stop_gradient(logits))
            teacher = jnp.where(is_teacher, soft, teacher)
            acc = jnp.mean(jnp.argmax(logits, -1) == y)
            return (jax.tree.map(jnp.add, grads, g), teacher, batch_stats), (loss, acc)

        teacher0 = jnp.zeros((x.shape[0], net.space.num_classes), jnp.float32)
        init = (jax.tree.map(jnp.zeros_like, state.params), teacher0, state.batch_stats)
        (grads, _, batch_stats), (losses, accs) = lax.scan(body, init, (archs, jnp.arange(n) == 0))
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": losses[0], "acc": accs[0], "student_loss": jnp.mean(losses[1:])}
        return TrainState(state.step + 1, params, batch_stats, opt_state), metrics

    return jax.jit(train_step, donate_argnums=(0,))


def step_subnets(space: SearchSpace, config: TrainConfig, step: int) -> list[Subnet]:
    """The sandwich of a step: largest, smallest and random subnets, at one resolution."""
    rng = np.random.default_rng((config.seed, step))
    r = int(rng.choice(space.resolutions))
    randoms = [space.sample(rng) for _ in range(config.n_random)]
    subnets = [space.largest(), space.smallest(), *randoms]
    return [space.subnet(r, s.depths, s.kernels, s.expands) for s in subnets]


def epoch_batches(n: int, config: TrainConfig, epoch: int) -> list[np.ndarray]:
    """Index batches of one epoch (the last partial batch is dropped: static shapes)."""
    order = epoch_order(n, config.seed, epoch)
    steps = n // config.batch_size
    return [order[i * config.batch_size : (i + 1) * config.batch_size] for i in range(steps)]


def normalise(images_u8: np.ndarray) -> np.ndarray:
    return ((images_u8.astype(np.float32) / 255.0) - MEAN) / STD


def resize_images(images_u8: np.ndarray, resolution: int, chunk: int = 256) -> np.ndarray:
    """uint8 (N, H, W, C) -> normalised float32 (N, R, R, C), bilinear (half-pixel centres),
    `chunk` images at a time so that a large set never exists as float32 at its source size."""
    if images_u8.shape[1:3] == (resolution, resolution):
        return normalise(images_u8)
    parts = [
        np.asarray(_resize(normalise(images_u8[i : i + chunk]), resolution))
        for i in range(0, len(images_u8), chunk)
    ]
    empty = np.zeros((0, resolution, resolution, images_u8.shape[3]), np.float32)
    return np.concatenate(parts) if parts else empty


@partial(jax.jit, static_argnums=1)
def _resize(x: jax.Array, resolution: int) -> jax.Array:
    shape = (x.shape[0], resolution, resolution, x.shape[3])
    return jax.image.resize(x, shape, "bilinear", antialias=True)


class Sharder:
    """Data parallelism over every device of every process: batches split on axis 0 (each
    process hands over its own rows), state replicated."""

    def __init__(self) -> None:
        self.mesh = Mesh(np.array(jax.devices()), ("data",))
        self.batch = NamedSharding(self.mesh, PartitionSpec("data"))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())

    @property
    def n_devices(self) -> int:
        return self.mesh.devices.size

    def put_batch(self, *arrays):
        """Global arrays from this process's rows (all rows when it is the only process)."""
        return tuple(jax.make_array_from_process_local_data(self.batch, a) for a in arrays)

    def put_replicated(self, tree):
        return jax.device_put(tree, self.replicated)


def maybe_sort_channels(state: TrainState, config: TrainConfig, epoch: int) -> TrainState:
    """Re-sort expanded channels by importance at the epochs the schedule names."""
    if epoch not in config.sort_channels_at:
        return state
    return TrainState(state.step, *sort_channels(state.params, state.batch_stats, state.opt_state))
