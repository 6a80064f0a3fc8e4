"""Service functions for supernet runs: train (and resume) one, evaluate a subnet of one.

They validate every input before anything is written, run the work through `supernet`, and
record runs, epoch metrics and checkpoints in the database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import delete, select

from db.models import Checkpoint, EpochMetric, Run, utcnow
from db.session import Database, open_db
from search.output import UserError, log
from supernet.data import DATASETS, Dataset, load_dataset
from supernet.distributed import Cluster
from supernet.space import SearchSpace, Subnet, load_space
from supernet.train import TrainConfig

DEFAULT_RUNS_DIR = Path("runs")


def enable_compile_cache() -> None:
    """Persist XLA compilations across processes (every new shape costs seconds on CPU)."""
    import jax

    path = os.environ.get("HWNAS_JAX_CACHE", str(Path.home() / ".cache" / "hwnas" / "jax"))
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


MIN_IMAGE_SIZE = 32  # folder images are decoded at least this large (as before presets)


def image_size_for(space: SearchSpace) -> int:
    """The side a folder dataset's images are decoded at: the space's largest resolution."""
    return max(MIN_IMAGE_SIZE, space.resolutions[-1])


LARGE_IMAGE_BATCH = 32  # default batch above 64 px: 4.4 GB of XLA temporaries at 224 px on CPU


def default_batch_size(space: SearchSpace) -> int:
    """64 (the digits' and CIFAR's default), or 32 for spaces above 64 px: at 224 px the
    training step of the largest subnets needed 8.1 GB of XLA temporaries at batch 64 on CPU
    (`compiled.memory_analysis()`), 4.4 GB at 32."""
    return TrainConfig().batch_size if space.resolutions[-1] <= 64 else LARGE_IMAGE_BATCH


def run_dataset(run: Run) -> Dataset:
    """The dataset of a recorded run, split and sized as it was for training (a streamed
    folder: its recalibration pool and validation images, `feed_service.streamed_dataset`)."""
    space = SearchSpace.from_dict(run.space)
    seed = run.config.get("seed", 0)
    size = image_size_for(space)
    if run.config.get("loader") == "stream":
        from search.feed_service import streamed_dataset

        return streamed_dataset(run.data_dir, size, seed)
    return load_dataset(run.dataset, run.data_dir, seed=seed, image_size=size)


def _check_args(dataset: str, epochs: int | None, batch_size: int | None) -> None:
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if epochs is not None and epochs < 1:
        raise UserError(f"--epochs must be at least 1, got {epochs}")
    if batch_size is not None and batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")


def _existing_run(db: Database, name: str, resume: bool) -> Run | None:
    with db.read() as s:
        run = s.scalars(select(Run).where(Run.name == name)).one_or_none()
        if run is not None and not resume:
            raise UserError(
                f"a run named {name!r} exists; pass --resume to continue it or --name NEW"
            )
        if run is not None:
            s.expunge(run)
        return run


def _create_run(db, name, dataset, data_dir, space, config, ckpt, loader: str) -> None:
    with db.write() as s:
        s.add(
            Run(
                name=name,
                dataset=dataset,
                data_dir=str(data_dir) if data_dir else None,
                space=space.to_dict(),
                config=config.to_dict() | {"checkpoint": str(ckpt), "loader": loader},
                status="running",
            )
        )


def _recorders(db: Database, name: str):
    def on_epoch(epoch: int, metrics: dict) -> None:
        with db.write() as s:
            run = s.scalars(select(Run).where(Run.name == name)).one()
            s.execute(
                delete(EpochMetric).where(EpochMetric.run_id == run.id, EpochMetric.epoch == epoch)
            )
            s.add(EpochMetric(run_id=run.id, epoch=epoch, step=metrics["step"], metrics=metrics))

    def on_checkpoint(step: int, path: str, sha256: str, nbytes: int) -> None:
        with db.write() as s:
            run = s.scalars(select(Run).where(Run.name == name)).one()
            s.add(Checkpoint(run_id=run.id, step=step, path=path, sha256=sha256, bytes=nbytes))

    return on_epoch, on_checkpoint


@dataclass(frozen=True)
class Launch:
    """How a training run reads its data and which process of a job this is."""

    loader: str = "auto"  # auto, memory or stream (`feed_service`)
    workers: int | None = None  # decoding processes of a streamed folder
    cluster: Cluster = field(default_factory=Cluster)
    checkpoint_minutes: float = 10.0  # mid-epoch checkpoints this far apart
    progress: bool = True


def train(
    db_url: str | None,
    dataset: str,
    *,
    data_dir: str | None = None,
    space_file: str | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    name: str | None = None,
    resume: bool = False,
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    progress: bool = True,
    launch: Launch | None = None,
) -> dict:
    """Train (or resume) a supernet run and record it; returns the contract's JSON keys.
    In a job of several processes only process 0 touches the database; the others take the
    run's settings from the arguments (all processes get the same ones) or, resuming, from
    the checkpoint under `runs_dir`, which every host must see."""
    launch = launch or Launch(progress=progress)
    _check_args(dataset, epochs, batch_size)
    if launch.checkpoint_minutes <= 0:
        raise UserError(f"--checkpoint-minutes must be above 0, got {launch.checkpoint_minutes}")
    space = load_space(space_file)
    launch.cluster.start()  # before anything runs on a device
    from search.feed_service import make_feed

    feed = make_feed(dataset, data_dir, image_size_for(space), seed, launch.loader,
                     launch.workers)  # fmt: skip
    space = dataclasses.replace(space, num_classes=feed.num_classes)
    name = name or dataset
    if not launch.cluster.leader:
        config, ckpt = _follower_settings(space, epochs, batch_size, seed, name, runs_dir, resume)
        return _train(space, feed, config, ckpt, resume, launch, None)
    db = open_db(db_url)
    try:
        run = _existing_run(db, name, resume)
        if run is not None:
            config = TrainConfig.from_dict(run.config)
            space = SearchSpace.from_dict(run.space)
            ckpt = Path(run.config["checkpoint"])
        else:
            config = _new_config(space, epochs, batch_size, seed)
            ckpt = _checkpoint_path(runs_dir, name)
            _create_run(db, name, dataset, data_dir, space, config, ckpt, feed.kind)
        return _train(space, feed, config, ckpt, run is not None, launch, (db, name))
    finally:
        db.dispose()


def _new_config(space: SearchSpace, epochs, batch_size, seed: int) -> TrainConfig:
    defaults = TrainConfig()
    return dataclasses.replace(
        defaults,
        epochs=epochs or defaults.epochs,
        batch_size=batch_size or default_batch_size(space),
        seed=seed,
    )


def _checkpoint_path(runs_dir, name: str) -> Path:
    return (Path(runs_dir) / name / "supernet.ckpt").resolve()


def _follower_settings(space, epochs, batch_size, seed, name, runs_dir, resume):
    """A process other than 0: the run's config from its checkpoint when resuming one that
    exists, else from the arguments."""
    from supernet import checkpoint

    ckpt = _checkpoint_path(runs_dir, name)
    if resume and ckpt.exists():
        raw, _ = checkpoint.read_state_dict(ckpt)
        if "config" in raw:
            return TrainConfig.from_dict(json.loads(raw["config"])), ckpt
    return _new_config(space, epochs, batch_size, seed), ckpt


@contextlib.contextmanager
def _job_guard(cluster: Cluster):
    """In a job of several processes, a collective that fails means another process died:
    say so in one line and leave at once (exit status 1). Leaving normally would wait in
    JAX's shutdown barrier for the dead process, then abort with a page of C++ log."""
    if not cluster.several:
        yield
        return
    import jax

    try:
        yield
    except jax.errors.JaxRuntimeError as e:
        first = str(e).strip().splitlines()[0][:300]
        log(f"process {cluster.process_id}: another process of the job stopped ({first}); "
            "this one stops too: start every process again with --resume")  # fmt: skip
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


def _train(space, feed, config, ckpt, resume, launch: Launch, recorded) -> dict:
    from supernet.trainer import Options, train_and_evaluate

    enable_compile_cache()
    on_epoch = on_checkpoint = None
    if recorded is not None:
        on_epoch, on_checkpoint = _recorders(*recorded)
    if resume:
        log(f"resuming {ckpt}" if ckpt.exists() else f"no checkpoint yet: starting {ckpt}")
    options = Options(
        progress=launch.progress,
        leader=launch.cluster.leader,
        checkpoint_s=60.0 * launch.checkpoint_minutes,
    )
    with _job_guard(launch.cluster):
        result = train_and_evaluate(
            space, feed, config, ckpt, resume=resume, on_epoch=on_epoch,
            on_checkpoint=on_checkpoint, options=options,
        )  # fmt: skip
    out = {
        "checkpoint": result.checkpoint,
        "sha256": result.sha256,
        "steps": result.steps,
        "val_acc_largest": result.val_acc_largest,
        "val_acc_smallest": result.val_acc_smallest,
        "epochs": config.epochs,
        "dataset": feed.summary(),
        "process": launch.cluster.process_id,
        "processes": launch.cluster.num_processes,
    }
    if recorded is None:
        return out | {"seconds": round(result.seconds, 2)}
    db, name = recorded
    with db.write() as s:
        run = s.scalars(select(Run).where(Run.name == name)).one()
        run.status, run.steps, run.finished_at = "finished", result.steps, utcnow()
        run.seconds = (run.seconds or 0.0) + result.seconds
        run.val_acc_largest, run.val_acc_smallest = result.val_acc_largest, result.val_acc_smallest
        seconds = run.seconds
    return {"run": name, "seconds": round(seconds, 2)} | out


def load_run(db: Database, name: str) -> Run:
    with db.read() as s:
        run = s.scalars(select(Run).where(Run.name == name)).one_or_none()
        if run is None:
            names = s.scalars(select(Run.name).order_by(Run.id)).all()
            known = f"; runs here: {', '.join(names)}" if names else "; run `hwnas train` first"
            raise UserError(f"no run named {name!r} in this database{known}")
        s.expunge(run)
    if run.status != "finished":
        raise UserError(f"run {name!r} is {run.status}; finish it with `hwnas train --resume`")
    return run


def parse_subnet(space: SearchSpace, subnet_json: str | None, random_seed: int | None) -> Subnet:
    if (subnet_json is None) == (random_seed is None):
        raise UserError("give exactly one of --subnet JSON or --random --seed N")
    if subnet_json is not None:
        return space.subnet_from_json(subnet_json)
    return space.sample(np.random.default_rng(random_seed))


def subnet_info(
    db_url: str | None, run_name: str, subnet_json: str | None, random_seed: int | None
) -> dict:
    """Accuracy (supernet weights, BN recalibrated), params and FLOPs of one subnet."""
    db = open_db(db_url, create=False)
    try:
        run = load_run(db, run_name)
    finally:
        db.dispose()
    space = SearchSpace.from_dict(run.space)
    subnet = parse_subnet(space, subnet_json, random_seed)
    from supernet.trainer import load_variables, subnet_val_accuracy

    enable_compile_cache()
    config = TrainConfig.from_dict(run.config)
    data = run_dataset(run)
    variables = load_variables(space, run.config["checkpoint"])
    cost = space.cost(subnet)
    return {
        "subnet": subnet.to_dict(),
        "key": subnet.key,
        "params": cost.params,
        "macs": cost.macs,
        "flops": 2 * cost.macs,
        "val_acc": subnet_val_accuracy(space, variables, data, subnet, config),
    }
