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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from hwnas.db import run_store
from hwnas.db.session import Database, DbError, open_db
from hwnas.exceptions import shown
from hwnas.search.output import UserError, is_user_error
from hwnas.search.result import Result
from hwnas.search.services.recorded_runs import RunRecord, image_size_for
from hwnas.supernet.compile_cache import enable_compile_cache
from hwnas.supernet.data import DATASETS
from hwnas.supernet.distributed import Cluster
from hwnas.supernet.host_memory import restart_with_allocator, reuse_host_memory
from hwnas.supernet.space import SearchSpace, load_space
from hwnas.supernet.train_config import LaunchConfig, TrainConfig, TrainFile, read_toml

if TYPE_CHECKING:  # the feeds import JAX, which must wait for `prepare_host_memory`
    from hwnas.supernet.feed import MemoryFeed, StreamFeed

logger = logging.getLogger(__name__)

ALLOCATOR_ABOVE_PX = 32  # below, a step's temporaries are small and async dispatch pays
LARGE_IMAGE_BATCH = 32  # default batch above 64 px: 4.4 GB of XLA temporaries at 224 px on CPU

# The variables JAX's launchers set; `Cluster.from_args` reads them where nothing else is given.
JOB_ENV = {"coordinator": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
           "process_id": "JAX_PROCESS_ID"}  # fmt: skip

Feed: TypeAlias = "MemoryFeed | StreamFeed"


def default_batch_size(space: SearchSpace) -> int:
    """64 (the digits' and CIFAR's default), or 32 for spaces above 64 px: at 224 px the
    training step of the largest subnets needed 8.1 GB of XLA temporaries at batch 64 on CPU
    (`compiled.memory_analysis()`), 4.4 GB at 32."""
    return TrainConfig().batch_size if space.resolutions[-1] <= 64 else LARGE_IMAGE_BATCH


def _check_args(dataset: str, epochs: int | None, batch_size: int | None) -> None:
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if epochs is not None and epochs < 1:
        raise UserError(f"{{field}} must be at least 1, got {epochs}", field="epochs")
    if batch_size is not None and batch_size < 1:
        raise UserError(f"{{field}} must be at least 1, got {batch_size}", field="batch_size")


@dataclass(frozen=True)
class Launch:
    """How a run is launched, as the caller gives it: a setting left None comes from the
    config file (its `LaunchConfig` keys), else its default (docs/config.md)."""

    runs_dir: str | Path | None = None
    loader: str | None = None  # auto, memory or stream (`hwnas.search.services.feed_choice`)
    decode_workers: int | None = None  # decoding processes of a streamed folder
    checkpoint_minutes: float | None = None  # mid-epoch checkpoints this far apart
    coordinator: str | None = None  # several hosts (docs/multihost.md); else $JAX_* or one
    num_processes: int | None = None
    process_id: int | None = None
    progress: bool = True


@dataclass(frozen=True)
class Job:
    """A launch settled: its settings (the caller's, else the file's, else the defaults) and
    which process of which job this is."""

    settings: LaunchConfig = field(default_factory=LaunchConfig)
    cluster: Cluster = field(default_factory=Cluster)
    progress: bool = True

    @classmethod
    def settle(cls, launch: Launch, from_file: Mapping[str, Any]) -> Job:
        """Each setting from `launch`, else (a job setting) its JAX_* variable, else the
        file, else the default."""
        given = {f.name: getattr(launch, f.name) for f in dataclasses.fields(LaunchConfig)}
        given["runs_dir"] = str(launch.runs_dir) if launch.runs_dir is not None else None
        from_file = {k: v for k, v in from_file.items() if not os.environ.get(JOB_ENV.get(k, ""))}
        settings = LaunchConfig(**from_file).given(**given)
        cluster = Cluster.from_args(
            settings.coordinator, settings.num_processes, settings.process_id
        )
        return cls(settings, cluster, launch.progress)


@dataclass(frozen=True)
class TrainResult(Result):
    """A training session's outcome (`hwnas train --json`).

    `run` is None (and left out of the JSON) in a process other than 0 of a job: only process
    0 records the run; its `seconds` are then the run's over every session, else this
    session's. `dataset` is the feed's summary (name, sizes, image shape, loader)."""

    run: str | None
    seconds: float
    checkpoint: str
    sha256: str
    steps: int
    val_acc_largest: float
    val_acc_smallest: float
    epochs: int
    dataset: Mapping[str, Any]
    process: int
    processes: int

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        if self.run is None:
            del out["run"]
        return out


def train(
    db_url: str | None,
    dataset: str,
    *,
    data_dir: str | None = None,
    space_file: SearchSpace | str | Path | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    name: str | None = None,
    resume: bool = False,
    runs_dir: str | Path | None = None,
    progress: bool = True,
    launch: Launch | None = None,
    config_file: str | Path | None = None,
) -> TrainResult:
    """Train (or resume) a supernet run and record it.
    `config_file` (TOML) sets any `TrainConfig` or `LaunchConfig` field; the arguments given
    (`epochs`, `batch_size`, `seed`, `runs_dir`, `launch`'s) win over it, and the defaults
    fill the rest. A resumed run reads the data it was started on (dataset, folder, seed,
    space, loader as recorded), whatever the arguments say. In a job of several processes only
    process 0 touches the database; the others take the run's settings from the arguments
    (every process gets the same ones) or, resuming, from the checkpoint under `runs_dir`,
    which every host must see."""
    launch = launch or Launch(progress=progress)
    if runs_dir is not None:
        launch = dataclasses.replace(launch, runs_dir=runs_dir)
    _check_args(dataset, epochs, batch_size)
    from_file = read_toml(config_file) if config_file is not None else TrainFile()
    job = Job.settle(launch, from_file.launch)
    seed = seed if seed is not None else from_file.train.get("seed", TrainConfig.seed)
    space, name = load_space(space_file), name or dataset
    asked = RunSpec(dataset, data_dir, space, seed, job.settings.loader, None, from_file.train)
    if not job.cluster.several:  # a job's dead-peer error needs async dispatch
        prepare_host_memory(_space_to_train(db_url, space, name, resume))
    job.cluster.start()  # before anything runs on a device
    sizes = Sizes(epochs, batch_size)
    with _job_guard(job.cluster):
        if not job.cluster.leader:
            ckpt = _checkpoint_path(job.settings.runs_dir, name)
            return _follow(_follower_spec(asked, ckpt, resume), sizes, ckpt, resume, job)
        return _lead(db_url, asked, sizes, name, resume, job)


def prepare_host_memory(space: SearchSpace) -> None:
    """Before JAX starts, in a one-process run: above 32 px restart with mimalloc, whose reuse
    of freed blocks needs CPU steps dispatched inline (`supernet/host_memory.py`). A job of
    several processes keeps asynchronous dispatch: a dead peer's error comes through it."""
    if max(space.resolutions) > ALLOCATOR_ABOVE_PX:
        restart_with_allocator()  # returns where it does not restart
    if reuse_host_memory():
        logger.info("host memory: large blocks kept between steps (HWNAS_HOST_MEMORY=0: off)")


def _space_to_train(
    db_url: str | None, asked: SearchSpace, name: str, resume: bool
) -> SearchSpace:
    """The space the run will train: a resumed run's as recorded (read, nothing created),
    else the one asked for."""
    if not resume:
        return asked
    try:
        with open_db(db_url, create=False) as db:
            run = run_store.find_run(db, name)
    except DbError:
        return asked  # opening it again for the run says what is wrong
    return RunRecord.of(run).space if run is not None else asked


@dataclass(frozen=True)
class Sizes:
    """The epochs and batch size the caller asked for (None: the file's, else the default)."""

    epochs: int | None = None
    batch_size: int | None = None


@dataclass(frozen=True)
class RunSpec:
    """What a run trains on: from the arguments, or for a resumed run as recorded."""

    dataset: str
    data_dir: str | None
    space: SearchSpace
    seed: int
    loader: str  # auto (a new run), memory or stream
    config: TrainConfig | None = None  # recorded; None: from the arguments
    from_file: Mapping[str, Any] = field(default_factory=dict)  # the config file's TrainConfig

    def record(self) -> str:
        """The JSON a checkpoint keeps, for the processes of a job to resume from."""
        return json.dumps({"dataset": self.dataset, "data_dir": self.data_dir,
                           "space": self.space.to_dict(), "seed": self.seed,
                           "loader": self.loader})  # fmt: skip


def _recorded_spec(record: RunRecord) -> RunSpec:
    run = record.row
    return RunSpec(run.dataset, run.data_dir, record.space, record.config.seed, run.loader,
                   record.config)  # fmt: skip


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


def _feed(spec: RunSpec, job: Job) -> Feed:
    from hwnas.search.services.feed_choice import make_feed

    size = image_size_for(spec.space)
    workers = job.settings.decode_workers
    return make_feed(spec.dataset, spec.data_dir, size, spec.seed, spec.loader, workers)


def _settled(spec: RunSpec, feed: Feed, sizes: Sizes) -> tuple[SearchSpace, TrainConfig]:
    """The space (sized to the data's classes) and config of a run, its batch size checked."""
    space = spec.space
    if spec.config is None:
        space = dataclasses.replace(space, num_classes=feed.num_classes)
    config = spec.config or _new_config(space, sizes, spec.seed, spec.from_file)
    import jax

    n_dev = jax.device_count()
    if config.batch_size % n_dev or config.batch_size > feed.n_train:
        raise UserError(
            f"batch size {config.batch_size} must divide over the job's {n_dev} devices and "
            f"not exceed the {feed.n_train} training images; pass another {{field}}",
            field="batch_size",
        )
    return space, config


def _lead(
    db_url: str | None, asked: RunSpec, sizes: Sizes, name: str, resume: bool, job: Job
) -> TrainResult:
    with open_db(db_url) as db:
        run = _existing_run(db, name, resume)
        spec = asked if run is None else _recorded_spec(run)
        if run is not None:
            logger.info(f"resuming run {name!r} on the data it was started on ({spec.dataset}, "
                f"seed {spec.seed}, loader {spec.loader})")  # fmt: skip
        feed = _feed(spec, job)
        space, config = _settled(spec, feed, sizes)
        ckpt = _checkpoint_path(job.settings.runs_dir, name) if run is None else \
            Path(run.checkpoint)  # fmt: skip
        spec = dataclasses.replace(spec, space=space, loader=feed.kind, config=config)
        if run is None:
            _create_run(db, name, spec, ckpt)
        return _train(spec, feed, ckpt, run is not None, job, (db, name))


def _existing_run(db: Database, name: str, resume: bool) -> RunRecord | None:
    run = run_store.find_run(db, name)
    if run is not None and not resume:
        raise UserError(
            f"a run named {name!r} exists; pass {{field}} to continue it, or another name",
            field="resume",
        )
    return RunRecord.of(run) if run is not None else None


def _create_run(db: Database, name: str, spec: RunSpec, ckpt: Path) -> None:
    assert spec.config is not None, "a run is recorded once its config is settled"
    new = run_store.NewRun(
        name=name,
        dataset=spec.dataset,
        data_dir=str(Path(spec.data_dir).resolve()) if spec.data_dir else None,
        space=spec.space.to_dict(),
        config=spec.config.to_dict(),
        checkpoint=str(ckpt),
        loader=spec.loader,
    )
    run_store.create_run(db, new)


def _follow(spec: RunSpec, sizes: Sizes, ckpt: Path, resume: bool, job: Job) -> TrainResult:
    feed = _feed(spec, job)
    space, config = _settled(spec, feed, sizes)
    spec = dataclasses.replace(spec, space=space, loader=feed.kind, config=config)
    return _train(spec, feed, ckpt, resume, job, None)


def _new_config(
    space: SearchSpace, sizes: Sizes, seed: int, from_file: Mapping[str, Any]
) -> TrainConfig:
    """The arguments given, else the config file's values, else the defaults (the batch
    size's depends on the space)."""
    base = TrainConfig(**from_file)
    return dataclasses.replace(
        base,
        epochs=sizes.epochs or base.epochs,
        batch_size=sizes.batch_size or from_file.get("batch_size") or default_batch_size(space),
        seed=seed,
    )


def _checkpoint_path(runs_dir: str | Path, name: str) -> Path:
    return (Path(runs_dir) / name / "supernet.ckpt").resolve()


@contextlib.contextmanager
def _job_guard(cluster: Cluster) -> Iterator[None]:
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


Recorders = tuple[Callable[[int, dict], None], Callable[[int, str, str, int], None]]


def _recorders(db: Database, name: str) -> Recorders:
    def on_epoch(epoch: int, metrics: dict) -> None:
        run_store.record_epoch(db, name, epoch, metrics)

    def on_checkpoint(step: int, path: str, sha256: str, nbytes: int) -> None:
        run_store.record_checkpoint(db, name, step, path, sha256, nbytes)

    return on_epoch, on_checkpoint


def _train(
    spec: RunSpec,
    feed: Feed,
    ckpt: Path,
    resume: bool,
    job: Job,
    recorded: tuple[Database, str] | None,
) -> TrainResult:
    """Train `spec` on `feed` into `ckpt`; `recorded`: the database and run name that process
    0 records the epochs, checkpoints and outcome under (None in the other processes)."""
    from hwnas.supernet.train_loop import Options, train_and_evaluate

    enable_compile_cache()
    assert spec.config is not None, "a run trains once its config is settled"
    on_epoch, on_checkpoint = _recorders(*recorded) if recorded is not None else (None, None)
    if resume:
        logger.info(f"resuming {ckpt}" if ckpt.exists() else f"no checkpoint yet: starting {ckpt}")
    options = Options(
        progress=job.progress,
        leader=job.cluster.leader,
        checkpoint_s=60.0 * job.settings.checkpoint_minutes,
        record=spec.record(),
    )
    done = train_and_evaluate(
        spec.space, feed, spec.config, ckpt, resume=resume, on_epoch=on_epoch,
        on_checkpoint=on_checkpoint, options=options,
    )  # fmt: skip
    seconds = done.seconds
    if recorded is not None:
        finished = run_store.Finished(
            done.steps, done.seconds, done.val_acc_largest, done.val_acc_smallest
        )
        seconds = run_store.finish_run(*recorded, finished)
    return TrainResult(
        run=recorded[1] if recorded is not None else None,
        seconds=round(seconds, 2),
        checkpoint=done.checkpoint,
        sha256=done.sha256,
        steps=done.steps,
        val_acc_largest=done.val_acc_largest,
        val_acc_smallest=done.val_acc_smallest,
        epochs=spec.config.epochs,
        dataset=feed.summary(),
        process=job.cluster.process_id,
        processes=job.cluster.num_processes,
    )
