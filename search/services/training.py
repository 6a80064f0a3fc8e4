"""`hwnas train`: train (and resume) a supernet run, on one process or on several hosts.

They validate every input before anything is written, run the work through `supernet`, and
record runs, epoch metrics and checkpoints in the database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.db.models import Checkpoint, EpochMetric, Run, utcnow
from hwnas.db.session import Database, DbError, open_db
from hwnas.search.output import UserError, is_user_error
from hwnas.search.search_config import DEFAULT_RUNS_DIR
from hwnas.search.services.recorded_runs import image_size_for
from hwnas.supernet.compile_cache import enable_compile_cache
from hwnas.supernet.data import DATASETS
from hwnas.supernet.distributed import Cluster
from hwnas.supernet.host_memory import restart_with_block_cache, reuse_host_memory
from hwnas.supernet.space import SearchSpace, load_space
from hwnas.supernet.train_config import TrainConfig, read_toml
from sqlalchemy import delete, select

from hwnas.exceptions import shown

logger = logging.getLogger(__name__)

BLOCK_CACHE_ABOVE_PX = 32  # below, a step's temporaries are small and async dispatch pays
LARGE_IMAGE_BATCH = 32  # default batch above 64 px: 4.4 GB of XLA temporaries at 224 px on CPU


def default_batch_size(space: SearchSpace) -> int:
    """64 (the digits' and CIFAR's default), or 32 for spaces above 64 px: at 224 px the
    training step of the largest subnets needed 8.1 GB of XLA temporaries at batch 64 on CPU
    (`compiled.memory_analysis()`), 4.4 GB at 32."""
    return TrainConfig().batch_size if space.resolutions[-1] <= 64 else LARGE_IMAGE_BATCH


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
                data_dir=str(Path(data_dir).resolve()) if data_dir else None,
                space=space.to_dict(),
                config=config.to_dict(),
                checkpoint=str(ckpt),
                loader=loader,
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

    loader: str = "auto"  # auto, memory or stream (`hwnas.search.services.feed_choice`)
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
    seed: int | None = None,
    name: str | None = None,
    resume: bool = False,
    runs_dir: str | Path = DEFAULT_RUNS_DIR,
    progress: bool = True,
    launch: Launch | None = None,
    config_file: str | Path | None = None,
) -> dict:
    """Train (or resume) a supernet run and record it; returns the contract's JSON keys.
    `config_file` (TOML) sets any `TrainConfig` field; `epochs`, `batch_size` and `seed`,
    where given, win over it, and the defaults fill the rest.
    A resumed run reads the data it was started on (dataset, folder, seed, space, loader as
    recorded), whatever the arguments say. In a job of several processes only process 0
    touches the database; the others take the run's settings from the arguments (every
    process gets the same ones) or, resuming, from the checkpoint under `runs_dir`, which
    every host must see."""
    launch = launch or Launch(progress=progress)
    _check_args(dataset, epochs, batch_size)
    if launch.checkpoint_minutes <= 0:
        raise UserError(f"--checkpoint-minutes must be above 0, got {launch.checkpoint_minutes}")
    from_file = read_toml(config_file) if config_file is not None else {}
    seed = seed if seed is not None else from_file.get("seed", TrainConfig.seed)
    space = load_space(space_file)
    asked = RunSpec(dataset, data_dir, space, seed, launch.loader, None, from_file)
    if launch.cluster.num_processes == 1:  # a job's dead-peer error needs async dispatch
        prepare_host_memory(_space_to_train(db_url, space, name or dataset, resume))
    launch.cluster.start()  # before anything runs on a device
    with _job_guard(launch.cluster):
        if not launch.cluster.leader:
            ckpt = _checkpoint_path(runs_dir, name or dataset)
            return _follow(_follower_spec(asked, ckpt, resume), epochs, batch_size, ckpt,
                           resume, launch)  # fmt: skip
        return _lead(db_url, asked, epochs, batch_size, name or dataset, resume, runs_dir,
                     launch)  # fmt: skip


def prepare_host_memory(space: SearchSpace) -> None:
    """Before JAX starts, in a one-process run: above 32 px restart with the block cache, whose
    reuse needs CPU steps dispatched inline (`supernet/host_memory.py`). A job of several
    processes keeps asynchronous dispatch: a dead peer's error comes through it."""
    if max(space.resolutions) > BLOCK_CACHE_ABOVE_PX:
        restart_with_block_cache()  # returns where it does not restart
    if reuse_host_memory():
        logger.info("host memory: large blocks kept between steps (HWNAS_HOST_MEMORY=0: off)")


def _space_to_train(db_url: str | None, asked: SearchSpace, name: str, resume: bool):
    """The space the run will train: a resumed run's as recorded (read, nothing created),
    else the one asked for."""
    if not resume:
        return asked
    try:
        with open_db(db_url, create=False) as db, db.read() as s:
            run = s.scalars(select(Run).where(Run.name == name)).one_or_none()
            recorded = run.space if run is not None else None
    except DbError:
        return asked  # opening it again for the run says what is wrong
    return SearchSpace.from_dict(recorded) if recorded is not None else asked


@dataclass(frozen=True)
class RunSpec:
    """What a run trains on: from the arguments, or for a resumed run as recorded."""

    dataset: str
    data_dir: str | None
    space: SearchSpace
    seed: int
    loader: str  # auto (a new run), memory or stream
    config: TrainConfig | None = None  # recorded; None: from the arguments
    from_file: Mapping[str, Any] = field(default_factory=dict)  # what --config FILE sets

    def record(self) -> str:
        """The JSON a checkpoint keeps, for the processes of a job to resume from."""
        return json.dumps({"dataset": self.dataset, "data_dir": self.data_dir,
                           "space": self.space.to_dict(), "seed": self.seed,
                           "loader": self.loader})  # fmt: skip


def _recorded_spec(run: Run) -> RunSpec:
    config = TrainConfig.from_dict(run.config)
    loader = run.loader
    space = SearchSpace.from_dict(run.space)
    return RunSpec(run.dataset, run.data_dir, space, config.seed, loader, config)


def _follower_spec(asked: RunSpec, ckpt: Path, resume: bool) -> RunSpec:
    """A process other than 0: the run as its checkpoint recorded it when resuming one that
    exists, else as asked."""
    from hwnas.supernet import checkpoint

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
    from hwnas.search.services.feed_choice import make_feed

    size = image_size_for(spec.space)
    return make_feed(spec.dataset, spec.data_dir, size, spec.seed, spec.loader, launch.workers)


def _settled(spec: RunSpec, feed, epochs, batch_size) -> tuple[SearchSpace, TrainConfig]:
    """The space (sized to the data's classes) and config of a run, its batch size checked."""
    space = spec.space
    if spec.config is None:
        space = dataclasses.replace(space, num_classes=feed.num_classes)
    config = spec.config or _new_config(space, epochs, batch_size, spec.seed, spec.from_file)
    import jax

    n_dev = jax.device_count()
    if config.batch_size % n_dev or config.batch_size > feed.n_train:
        raise UserError(
            f"batch size {config.batch_size} must divide over the job's {n_dev} devices and "
            f"not exceed the {feed.n_train} training images; pass another --batch-size"
        )
    return space, config


def _lead(db_url, asked: RunSpec, epochs, batch_size, name, resume, runs_dir, launch) -> dict:
    with open_db(db_url) as db:
        run = _existing_run(db, name, resume)
        spec = asked if run is None else _recorded_spec(run)
        if run is not None:
            logger.info(f"resuming run {name!r} on the data it was started on ({spec.dataset}, "
                f"seed {spec.seed}, loader {spec.loader})")  # fmt: skip
        feed = _feed(spec, launch)
        space, config = _settled(spec, feed, epochs, batch_size)
        ckpt = _checkpoint_path(runs_dir, name) if run is None else Path(run.checkpoint)
        spec = dataclasses.replace(spec, space=space, loader=feed.kind, config=config)
        if run is None:
            _create_run(db, name, spec.dataset, spec.data_dir, space, config, ckpt, feed.kind)
        return _train(spec, feed, ckpt, run is not None, launch, (db, name))


def _follow(spec: RunSpec, epochs, batch_size, ckpt: Path, resume: bool, launch) -> dict:
    feed = _feed(spec, launch)
    space, config = _settled(spec, feed, epochs, batch_size)
    spec = dataclasses.replace(spec, space=space, loader=feed.kind, config=config)
    return _train(spec, feed, ckpt, resume, launch, None)


def _new_config(space: SearchSpace, epochs, batch_size, seed: int, from_file) -> TrainConfig:
    """The flags given, else the config file's values, else the defaults (the batch size's
    depends on the space)."""
    base = TrainConfig(**from_file)
    return dataclasses.replace(
        base,
        epochs=epochs or base.epochs,
        batch_size=batch_size or from_file.get("batch_size") or default_batch_size(space),
        seed=seed,
    )


def _checkpoint_path(runs_dir, name: str) -> Path:
    return (Path(runs_dir) / name / "hwnas.supernet.ckpt").resolve()


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

    try:
        yield
    except Exception as e:
        if is_user_error(e):
            line = " ".join(shown(e, flags=True).split())
            _leave(2, f"hwnas: error: process {cluster.process_id}: {line}")
        if isinstance(e, jax.errors.JaxRuntimeError):
            first = str(e).strip().splitlines()[0][:300]
            line = f"process {cluster.process_id}: another process of the job stopped ({first}); "
            _leave(1, line + "this one stops too: start every process again with --resume")
        traceback.print_exc()
        _leave(1, f"process {cluster.process_id}: stopped by the error above")


def _leave(code: int, line: str) -> None:
    logger.info(line)
    sys.stdout.flush()
    os._exit(code)


def _train(spec: RunSpec, feed, ckpt: Path, resume: bool, launch: Launch, recorded) -> dict:
    from hwnas.supernet.train_loop import Options, train_and_evaluate

    enable_compile_cache()
    on_epoch = on_checkpoint = None
    if recorded is not None:
        on_epoch, on_checkpoint = _recorders(*recorded)
    if resume:
        logger.info(f"resuming {ckpt}" if ckpt.exists() else f"no checkpoint yet: starting {ckpt}")
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
