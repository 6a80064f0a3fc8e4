"""Training runs in the database: find, create and finish a run, record its epochs and
checkpoints. Plain functions of an open `Database`; rows come back detached from their session.

The space and config travel as the JSON objects the run's row keeps (`SearchSpace.to_dict()`,
`TrainConfig.to_dict()`): `db` imports nothing else of hwnas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from hwnas.db.models import Checkpoint, EpochMetric, Run, utcnow
from hwnas.db.session import Database


def _by_name(s: Session, name: str) -> Run | None:
    return s.scalars(select(Run).where(Run.name == name)).one_or_none()


def find_run(db: Database, name: str) -> Run | None:
    """The run `name` (any status), detached; None where there is none."""
    with db.read() as s:
        run = _by_name(s, name)
        if run is not None:
            s.expunge(run)
        return run


def run_names(db: Database) -> list[str]:
    """Every run's name, oldest first."""
    with db.read() as s:
        return list(s.scalars(select(Run.name).order_by(Run.id)))


@dataclass(frozen=True)
class NewRun:
    """What a run's row records when it starts."""

    name: str
    dataset: str
    data_dir: str | None  # absolute, or None for built-in data
    space: dict[str, Any]  # SearchSpace.to_dict()
    config: dict[str, Any]  # TrainConfig.to_dict()
    checkpoint: str
    loader: str  # memory or stream


def create_run(db: Database, new: NewRun) -> None:
    """Record a new run, status `running`."""
    with db.write() as s:
        s.add(
            Run(
                name=new.name,
                dataset=new.dataset,
                data_dir=new.data_dir,
                space=new.space,
                config=new.config,
                checkpoint=new.checkpoint,
                loader=new.loader,
                status="running",
            )
        )


def record_epoch(db: Database, name: str, epoch: int, metrics: dict[str, Any]) -> None:
    """The metrics of one epoch of run `name` (replacing a resumed epoch's)."""
    with db.write() as s:
        run_id = s.scalars(select(Run.id).where(Run.name == name)).one()
        s.execute(
            delete(EpochMetric).where(EpochMetric.run_id == run_id, EpochMetric.epoch == epoch)
        )
        s.add(EpochMetric(run_id=run_id, epoch=epoch, step=metrics["step"], metrics=metrics))


def record_checkpoint(
    db: Database, name: str, step: int, path: str, sha256: str, nbytes: int
) -> None:
    """A checkpoint of run `name`, written at `step`."""
    with db.write() as s:
        run_id = s.scalars(select(Run.id).where(Run.name == name)).one()
        s.add(Checkpoint(run_id=run_id, step=step, path=path, sha256=sha256, bytes=nbytes))


@dataclass(frozen=True)
class Finished:
    """How a training session of a run ended."""

    steps: int
    seconds: float  # this session's
    val_acc_largest: float
    val_acc_smallest: float


def finish_run(db: Database, name: str, done: Finished) -> float:
    """Mark run `name` finished with its results; returns its training seconds over every
    session (a resumed run adds this one's)."""
    with db.write() as s:
        run = s.scalars(select(Run).where(Run.name == name)).one()
        run.status, run.steps, run.finished_at = "finished", done.steps, utcnow()
        run.seconds = (run.seconds or 0.0) + done.seconds
        run.val_acc_largest, run.val_acc_smallest = done.val_acc_largest, done.val_acc_smallest
        return run.seconds
