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
import traceback
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
    A resumed run reads the data it was started on (dataset, folder, seed, space, loader as
    recorded), whatever the arguments say. In a job of several processes only process 0
    touches the database; the others take the run's settings from the arguments (every
    process gets the same ones) or, resuming, from the checkpoint under `runs_dir`, which
    every host must see."""
    launch = launch or Launch(progress=progress)
    _check_args(dataset, epochs, batch_size)
    if launch.checkpoint_minutes <= 0:
        raise UserError(f"--checkpoint-minutes must be above 0, got {launch.checkpoint_minutes}")
    asked = RunSpec(dataset, data_dir, load_space(space_file), seed, launch.loader)
    launch.cluster.start()  # before anything runs on a device
    with _job_guard(launch.cluster):
        if not launch.cluster.leader:
            ckpt = _checkpoint_path(runs_dir, name or dataset)
            return _follow(_follower_spec(asked, ckpt, resume), epochs, batch_size, ckpt,
                           resume, launch)  # fmt: skip
        return _lead(db_url, asked, epochs, batch_size, name or dataset, resume, runs_dir,
                     launch)  # fmt: skip


@dataclass(frozen=True)
class RunSpec:
    """What a run trains on: from the arguments, or for a resumed run as recorded."""

    dataset: str
    data_dir: str | None
    space: SearchSpace
    seed: int
    loader: str  # auto (a new run), memory or stream
    config: TrainConfig | None = None  # recorded; None: from the arguments

    def record(self) -> str:
        """The JSON a checkpoint keeps, for the processes of a job to resume from."""
        return json.dumps({"dataset": self.dataset, "data_dir": self.data_dir,
                           "space": self.space.to_dict(), "seed": self.seed,
                           "loader": self.loader})  # fmt: skip


def _recorded_spec(run: Run) -> RunSpec:
    config = TrainConfig.from_dict(run.config)
    loader = run.config.get("loader", "memory")  # runs before streaming were in memory
    space = SearchSpace.from_dict(run.space)
    return RunSpec(run.dataset, run.data_dir, space, config.seed, loader, config)


def _follower_spec(asked: RunSpec, ckpt: Path, resume: bool) -> RunSpec:
    """A process other than 0: the run as its checkpoint recorded it when resuming one that
    exists, else as asked."""
    from supernet import checkpoint

    if not (resume and ckpt.exists()):
        return asked
    raw, _ = checkpoint.read_state_dict(ckpt)
    if "run" not in raw or "config" not in raw:
        return asked
    run = json.loads(raw["run"])
    config = TrainConfig.from_dict(json.loads(raw["config"]))
    space = SearchSpace.from_dict(run["space"])
    return RunSpec(run["dataset"], run["data_dir"], space, run["seed"], run["loader"], config)


def _feed(spec: RunSpec, launch: Launch):
    from search.feed_service import make_feed

    size = image_size_for(spec.space)
    return make_feed(spec.dataset, spec.data_dir, size, spec.seed, spec.loader, launch.workers)


def _settled(spec: RunSpec, feed, epochs, batch_size) -> tuple[SearchSpace, TrainConfig]:
    """The space (sized to the data's classes) and config of a run, its batch size checked."""
    space = spec.space
    if spec.config is None:
        space = dataclasses.replace(space, num_classes=feed.num_classes)
    config = spec.config or _new_config(space, epochs, batch_size, spec.seed)
    import jax

    n_dev = jax.device_count()
    if config.batch_size % n_dev or config.batch_size > feed.n_train:
        raise UserError(
            f"batch size {config.batch_size} must divide over the job's {n_dev} devices and "
            f"not exceed the {feed.n_train} training images; pass another --batch-size"
        )
    return space, config


def _lead(db_url, asked: RunSpec, epochs, batch_size, name, resume, runs_dir, launch) -> dict:
    db = open_db(db_url)
    try:
        run = _existing_run(db, name, resume)
        spec = asked if run is None else _recorded_spec(run)
        if run is not None:
            log(f"resuming run {name!r} on the data it was started on ({spec.dataset}, "
                f"seed {spec.seed}, loader {spec.loader})")  # fmt: skip
        feed = _feed(spec, launch)
        space, config = _settled(spec, feed, epochs, batch_size)
        ckpt = _checkpoint_path(runs_dir, name) if run is None else Path(run.config["checkpoint"])
        spec = dataclasses.replace(spec, space=space, loader=feed.kind, config=config)
        if run is None:
            _create_run(db, name, spec.dataset, spec.data_dir, space, config, ckpt, feed.kind)
        return _train(spec, feed, ckpt, run is not None, launch, (db, name))
    finally:
        db.dispose()


def _follow(spec: RunSpec, epochs, batch_size, ckpt: Path, resume: bool, launch) -> dict:
    feed = _feed(spec, launch)
    space, config = _settled(spec, feed, epochs, batch_size)
    spec = dataclasses.replace(spec, space=space, loader=feed.kind, config=config)
    return _train(spec, feed, ckpt, resume, launch, None)


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


@contextlib.contextmanager
def _job_guard(cluster: Cluster):
    """In a job of several processes, any error leaves at once, so the other processes'
    next gradient exchange fails and they leave too, instead of waiting for this one (and
    then in JAX's shutdown barrier, which ends in a page of C++ log). A failed exchange means
    another process died. One line says which: exit 2 for bad input, 1 otherwise."""
    if not cluster.several:
        yield
        return
    import jax

    from search.cli import USER_ERRORS

    try:
        yield
    except USER_ERRORS as e:
        _leave(2, f"hwnas: error: process {cluster.process_id}: {' '.join(str(e).split())}")
    except jax.errors.JaxRuntimeError as e:
        first = str(e).strip().splitlines()[0][:300]
        line = f"process {cluster.process_id}: another process of the job stopped ({first}); "
        _leave(1, line + "this one stops too: start every process again with --resume")
    except Exception:
        traceback.print_exc()
        _leave(1, f"process {cluster.process_id}: stopped by the error above")


def _leave(code: int, line: str) -> None:
    log(line)
    sys.stdout.flush()
    os._exit(code)


def _train(spec: RunSpec, feed, ckpt: Path, resume: bool, launch: Launch, recorded) -> dict:
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
        record=spec.record(),
    )
    config = spec.config
    result = train_and_evaluate(
        spec.space, feed, config, ckpt, resume=resume, on_epoch=on_epoch,
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
