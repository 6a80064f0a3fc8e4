"""The training loop: epochs, evaluation, checkpoints and progress, around `train.py`'s step.

It records nothing itself: callbacks receive each epoch's metrics and each checkpoint, and the
service layer in `search/` stores them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
from flax import serialization
from tqdm import tqdm

from supernet import checkpoint
from supernet.data import Dataset
from supernet.evaluate import Evaluator, resized_calibration
from supernet.model import SuperNet, arch_arrays
from supernet.space import SearchSpace, Subnet
from supernet.train import (
    Sharder,
    TrainConfig,
    TrainState,
    create_train_state,
    make_optimizer,
    make_train_step,
    maybe_sort_channels,
    resize_images,
    run_epoch,
)


@dataclass(frozen=True)
class TrainResult:
    steps: int
    seconds: float
    val_acc_largest: float
    val_acc_smallest: float
    checkpoint: str
    sha256: str
    epochs_run: int


@dataclass(frozen=True)
class Prepared:
    """Everything a run needs before its first step."""

    net: SuperNet
    tx: object
    val: dict[int, np.ndarray]
    steps_per_epoch: int


def prepare(space: SearchSpace, data: Dataset, config: TrainConfig) -> Prepared:
    n_dev = jax.local_device_count()
    if config.batch_size % n_dev or config.batch_size > len(data.y_train):
        raise ValueError(
            f"batch size {config.batch_size} must divide over {n_dev} devices and not exceed "
            f"the {len(data.y_train)} training images"
        )
    ends = {space.resolutions[0], space.resolutions[-1]}
    val = {r: resize_images(data.x_val, r) for r in ends}
    steps = len(data.y_train) // config.batch_size
    return Prepared(SuperNet(space), make_optimizer(config, steps), val, steps)


def initial_state(prep: Prepared, config: TrainConfig, ckpt: Path, resume: bool):
    """A fresh state, or the last checkpoint's (state, next epoch) when resuming."""
    state = create_train_state(prep.net, prep.tx, config.seed)
    if resume and ckpt.exists():
        restored, _ = checkpoint.restore(ckpt, {"state": state, "epoch": 0})
        return restored["state"], int(restored["epoch"]) + 1
    return state, 0


def evaluate_ends(prep: Prepared, ev: Evaluator, state: TrainState, data: Dataset, config):
    """Validation accuracy of the largest and smallest subnets after BN recalibration."""
    space = prep.net.space
    out = []
    for subnet in (space.largest(), space.smallest()):
        r = subnet.resolution
        calib = resized_calibration(data.x_train, r, config)
        arch = arch_arrays(space, subnet)
        out.append(
            ev.subnet_accuracy(
                state.params, state.batch_stats, arch, calib, prep.val[r], data.y_val
            )
        )
    return out


def train_and_evaluate(
    space: SearchSpace,
    data: Dataset,
    config: TrainConfig,
    ckpt: str | Path,
    *,
    resume: bool = False,
    on_epoch: Callable[[int, dict], None] | None = None,
    on_checkpoint: Callable[[int, str, str, int], None] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train the supernet of `space` on `data`; checkpoint after every epoch."""
    ckpt = Path(ckpt)
    prep = prepare(space, data, config)
    sharder = Sharder()
    state, start = initial_state(prep, config, ckpt, resume)
    state = sharder.put_replicated(state)
    step_fn, ev = make_train_step(prep.net, prep.tx), Evaluator.for_net(prep.net)
    t0, digest, accs = time.perf_counter(), "", (float("nan"), float("nan"))
    for epoch in range(start, config.epochs):
        state = maybe_sort_channels(state, config, epoch)
        bar = tqdm(
            total=prep.steps_per_epoch,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            file=sys.stderr,
            disable=not progress,
            leave=False,
        )
        losses = []
        steps = run_epoch(
            state, step_fn, data.x_train, data.y_train, space, config, epoch, sharder
        )
        for new_state, m in steps:
            state = new_state
            losses.append(m["loss"])
            ips = config.batch_size * (2 + config.n_random) / max(m["seconds"], 1e-9)
            bar.set_postfix(loss=f"{m['loss']:.3f}", acc=f"{m['acc']:.3f}", img_s=f"{ips:.0f}")
            bar.update()
        bar.close()
        accs = evaluate_ends(prep, ev, state, data, config)
        digest, nbytes = checkpoint.save(ckpt, {"state": state, "epoch": epoch})
        metrics = {
            "loss": float(np.mean(losses)),
            "val_acc_largest": accs[0],
            "val_acc_smallest": accs[1],
            "seconds": time.perf_counter() - t0,
        }
        if progress:
            print(
                f"epoch {epoch + 1}/{config.epochs} loss {metrics['loss']:.4f} "
                f"val largest {accs[0]:.4f} smallest {accs[1]:.4f}",
                file=sys.stderr,
            )
        if on_epoch:
            on_epoch(epoch, metrics | {"step": int(state.step)})
        if on_checkpoint:
            on_checkpoint(int(state.step), str(ckpt), digest, nbytes)
    if start >= config.epochs:  # already finished: report the checkpoint as it is
        accs = evaluate_ends(prep, ev, state, data, config)
        digest = checkpoint.file_sha256(ckpt)
    return TrainResult(
        int(state.step),
        time.perf_counter() - t0,
        accs[0],
        accs[1],
        str(ckpt),
        digest,
        config.epochs - start,
    )


def load_variables(space: SearchSpace, ckpt: str | Path) -> dict:
    """The supernet's {'params', 'batch_stats'} from a checkpoint (verified by its hash)."""
    net = SuperNet(space)
    x = np.zeros((1, space.resolutions[-1], space.resolutions[-1], space.in_channels), np.float32)
    shapes = jax.eval_shape(
        lambda: net.init(jax.random.key(0), x, arch_arrays(space, space.largest()))
    )
    template = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), dict(shapes))
    state, _ = checkpoint.read_state_dict(ckpt)
    try:
        raw = state["state"]
        tree = {"params": raw["params"], "batch_stats": raw["batch_stats"]}
        return serialization.from_state_dict(template, tree)
    except (KeyError, ValueError, TypeError) as e:
        raise checkpoint.CheckpointError(f"checkpoint {ckpt} does not fit space: {e}") from None


def subnet_val_accuracy(space, variables, data: Dataset, subnet: Subnet, config) -> float:
    """Validation accuracy of one subnet with the supernet's weights, BN recalibrated."""
    net = SuperNet(space)
    ev = Evaluator.for_net(net)
    r = subnet.resolution
    calib = resized_calibration(data.x_train, r, config)
    val = resize_images(data.x_val, r)
    arch = arch_arrays(space, subnet)
    return ev.subnet_accuracy(
        variables["params"], variables["batch_stats"], arch, calib, val, data.y_val
    )
