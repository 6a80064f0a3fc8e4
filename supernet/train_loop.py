"""The training loop: epochs, evaluation, checkpoints and progress, around `train_step.py`'s step.

It records nothing itself: callbacks receive each epoch's metrics and each checkpoint, and the
service layer in `search/` stores them.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
from flax import serialization
from tqdm import tqdm

from hwnas.supernet import checkpoint
from hwnas.supernet.checkpoint import CheckpointError
from hwnas.supernet.data import Dataset
from hwnas.supernet.distributed import same_everywhere
from hwnas.supernet.evaluate import Evaluator, resized_calibration
from hwnas.supernet.feed import MemoryFeed
from hwnas.supernet.host_memory import release_free_memory
from hwnas.supernet.loader import Shard
from hwnas.supernet.model import SuperNet, arch_arrays, stack_archs
from hwnas.supernet.space import SearchSpace, Subnet
from hwnas.supernet.train_step import (
    Sharder,
    TrainConfig,
    TrainState,
    create_train_state,
    make_optimizer,
    make_train_step,
    maybe_sort_channels,
    resize_images,
    step_subnets,
)

CHECKPOINT_S = 600.0  # mid-epoch checkpoints at most this far apart


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
    steps_per_epoch: int


@dataclass(frozen=True)
class Options:
    """How a run goes, not what it computes (none of these changes the weights)."""

    progress: bool = True
    leader: bool = True  # writes checkpoints and calls the callbacks (process 0 of a job)
    checkpoint_s: float = CHECKPOINT_S  # also checkpoint mid-epoch after this long
    record: str = ""  # JSON kept in every checkpoint: what the run reads (`train_service`)


def prepare(space: SearchSpace, feed, config: TrainConfig) -> Prepared:
    n_dev = jax.device_count()
    if config.batch_size % n_dev or config.batch_size > feed.n_train:
        raise ValueError(
            f"batch size {config.batch_size} must divide over {n_dev} devices and not exceed "
            f"the {feed.n_train} training images"
        )
    steps = feed.n_train // config.batch_size
    return Prepared(SuperNet(space), make_optimizer(config, steps), steps)


def initial_state(prep: Prepared, config: TrainConfig, ckpt: Path, resume: bool):
    """A fresh state, or the last checkpoint's state and its loader state (None from a
    checkpoint written before the loader kept one: it ended an epoch)."""
    state = create_train_state(prep.net, prep.tx, config.seed)
    if not (resume and ckpt.exists()):
        return state, None
    raw, _ = checkpoint.read_state_dict(ckpt)
    restored, _ = checkpoint.restore(ckpt, {"state": state, "epoch": 0})
    loader = raw.get("loader")
    return restored["state"], None if loader is None else json.loads(loader)


def evaluate_ends(prep: Prepared, ev: Evaluator, state: TrainState, feed, config):
    """Validation accuracy of the largest and smallest subnets after BN recalibration."""
    space = prep.net.space
    host = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
    out = []
    for subnet in (space.largest(), space.smallest()):
        r = subnet.resolution
        arch = arch_arrays(space, subnet)
        stats = ev.recalibrate(host, arch, feed.calibration(r, config))
        variables = {"params": host["params"], "batch_stats": stats}
        right = total = 0
        for x, y in feed.validation(r):
            if len(y):
                right += int((np.argmax(ev.predict(variables, arch, x), -1) == y).sum())
                total += len(y)
        out.append(right / max(total, 1))
    return out


class _Meter:
    """Images/s and the share of each step spent waiting for data (over the epoch)."""

    def __init__(self, batch: int) -> None:
        self.batch, self.wait, self.compute, self.bad = batch, 0.0, 0.0, 0
        self.losses: list[float] = []

    def add(self, wait: float, compute: float, bad: int, loss: float) -> None:
        self.wait, self.compute = self.wait + wait, self.compute + compute
        self.bad += bad
        self.losses.append(loss)

    def figures(self) -> dict:
        total = max(self.wait + self.compute, 1e-9)
        return {
            "images_per_s": self.batch * len(self.losses) / total,
            "data_wait_share": self.wait / total,
            "unreadable_images": self.bad,
        }


def train_and_evaluate(
    space: SearchSpace,
    feed,
    config: TrainConfig,
    ckpt: str | Path,
    *,
    resume: bool = False,
    on_epoch: Callable[[int, dict], None] | None = None,
    on_checkpoint: Callable[[int, str, str, int], None] | None = None,
    options: Options = Options(),
) -> TrainResult:
    """Train the supernet of `space` on `feed` (a `hwnas.supernet.feed` feed or a `Dataset`);
    checkpoint after every epoch and every `options.checkpoint_s` seconds within one."""
    if isinstance(feed, Dataset):
        feed = MemoryFeed(feed)
    ckpt = Path(ckpt)
    prep = prepare(space, feed, config)
    sharder = Sharder()
    state, loader_state = initial_state(prep, config, ckpt, resume)
    state = sharder.put_replicated(state)
    step_fn, ev = make_train_step(prep.net, prep.tx), Evaluator.for_net(prep.net)
    start = int(state.step)
    _check_loader(loader_state, feed, start, ckpt)
    same_everywhere(f"{config.to_dict()} {space.to_dict()} {start}")
    batches = feed.batches(space, config, Shard(jax.process_index(), jax.process_count()), start)
    spe = prep.steps_per_epoch
    run = _Run(prep, config, ckpt, options, on_checkpoint, feed.fingerprint())
    t0, digest, accs = time.perf_counter(), "", (float("nan"), float("nan"))
    try:
        for epoch in range(start // spe, config.epochs):
            within = int(state.step) - epoch * spe
            if within == 0:  # (every process sorts alike; the result is put back replicated)
                state = sharder.put_replicated(maybe_sort_channels(state, config, epoch))
            state, meter = run.epoch(state, batches, step_fn, sharder, epoch, within)
            digest = run.save(state, epoch)  # before the evaluation, which may fail
            accs = evaluate_ends(prep, ev, state, feed, config)
            run.report(epoch, state, meter, accs, time.perf_counter() - t0, on_epoch)
            release_free_memory()
    finally:
        batches.close()
    if start >= config.epochs * spe:  # already finished: report the checkpoint as it is
        accs = evaluate_ends(prep, ev, state, feed, config)
        digest = checkpoint.file_sha256(ckpt)
    return TrainResult(
        int(state.step),
        time.perf_counter() - t0,
        accs[0],
        accs[1],
        str(ckpt),
        digest,
        config.epochs - start // spe,
    )


def _check_loader(loader: dict | None, feed, start: int, ckpt: Path) -> None:
    """A checkpoint resumes on the data it was written on, at its own step."""
    if loader is None:  # written before checkpoints kept the loader's position
        return
    if loader.get("fingerprint") not in (None, feed.fingerprint()):
        raise CheckpointError(
            f"the training data differ from those of checkpoint {ckpt} (files added, removed "
            "or renamed, another seed or split): restore them or start a new run"
        )
    if int(loader.get("next_step", start)) != start:
        raise CheckpointError(f"checkpoint {ckpt} is inconsistent (loader and state steps)")


class _Run:
    """One run's epochs: the steps, the progress bar, the checkpoints, the epoch reports."""

    def __init__(self, prep, config, ckpt, options, on_checkpoint, fingerprint: str) -> None:
        self.prep, self.config, self.ckpt, self.options = prep, config, ckpt, options
        self.on_checkpoint, self.fingerprint = on_checkpoint, fingerprint
        self.saved_at = time.perf_counter()
        self.seen_bad: set[str] = set()

    def epoch(self, state, batches, step_fn, sharder, epoch: int, within: int):
        space, config, spe = self.prep.net.space, self.config, self.prep.steps_per_epoch
        bar = tqdm(total=spe, initial=within, desc=f"epoch {epoch + 1}/{config.epochs}",
                   file=sys.stderr, leave=False,
                   disable=not (self.options.progress and self.options.leader))  # fmt: skip
        meter = _Meter(config.batch_size)
        for _ in range(within, spe):
            t0 = time.perf_counter()
            b = next(batches)
            subnets = step_subnets(space, config, int(state.step))
            archs = stack_archs([arch_arrays(space, s) for s in subnets])
            x, y = sharder.put_batch(resize_images(b.x, subnets[0].resolution), b.y)
            t1 = time.perf_counter()
            state, m = step_fn(state, x, y, archs)
            m = {k: float(v) for k, v in m.items()}
            meter.add(t1 - t0, time.perf_counter() - t1, len(b.bad), m["loss"])
            self._report_bad(b.bad)
            f = meter.figures()
            bar.set_postfix(loss=f"{m['loss']:.3f}", acc=f"{m['acc']:.3f}",
                            img_s=f"{f['images_per_s']:.1f}",
                            data=f"{100 * f['data_wait_share']:.0f}%",
                            step=f"{time.perf_counter() - t0:.2f}s")  # fmt: skip
            bar.update()
            due = time.perf_counter() - self.saved_at >= self.options.checkpoint_s
            if due and int(state.step) % spe:  # the epoch's end saves after its evaluation
                self.save(state, epoch - 1)
        bar.close()
        return state, meter

    def report(self, epoch: int, state, meter: _Meter, accs, seconds: float, on_epoch) -> None:
        """The epoch's line on stderr and its metrics to `on_epoch` (process 0)."""
        if not self.options.leader:
            return
        metrics = {
            "loss": float(np.mean(meter.losses)) if meter.losses else float("nan"),
            "val_acc_largest": accs[0],
            "val_acc_smallest": accs[1],
            "seconds": seconds,
        } | meter.figures()
        if self.options.progress:
            print(
                f"epoch {epoch + 1}/{self.config.epochs} loss {metrics['loss']:.4f} "
                f"val largest {accs[0]:.4f} smallest {accs[1]:.4f} "
                f"({metrics['images_per_s']:.0f} img/s, "
                f"{100 * metrics['data_wait_share']:.0f}% waiting for data)",
                file=sys.stderr,
            )
        if on_epoch:
            on_epoch(epoch, metrics | {"step": int(state.step)})

    def _report_bad(self, bad: tuple[str, ...]) -> None:
        for path in bad:
            if path not in self.seen_bad:
                self.seen_bad.add(path)
                print(f"skipping unreadable image {path} (replaced by the next image)",
                      file=sys.stderr)  # fmt: skip

    def save(self, state, epoch: int) -> str:
        """Checkpoint `state` with the loader's position (`epoch`: the last finished one)."""
        self.saved_at = time.perf_counter()
        if not self.options.leader:
            return ""
        loader = {"next_step": int(state.step), "fingerprint": self.fingerprint}
        config = json.dumps(self.config.to_dict())
        tree = {"state": state, "epoch": epoch, "loader": json.dumps(loader), "config": config,
                "run": self.options.record}  # fmt: skip
        digest, nbytes = checkpoint.save(self.ckpt, tree)
        if self.on_checkpoint:
            self.on_checkpoint(int(state.step), str(self.ckpt), digest, nbytes)
        return digest


def init_variables(space: SearchSpace, seed: int = 0) -> dict:
    """The supernet's {'params', 'batch_stats'} as initialised, untrained (numpy arrays): what
    a latency measurement needs, since a model's speed does not depend on its weights' values."""
    net = SuperNet(space)
    r = space.resolutions[-1]
    x = np.zeros((1, r, r, space.in_channels), np.float32)
    arch = arch_arrays(space, space.largest())
    variables = jax.jit(lambda: net.init(jax.random.key(seed), x, arch))()
    return jax.tree.map(np.asarray, dict(variables))


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
