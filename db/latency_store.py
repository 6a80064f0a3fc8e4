"""The queries of latency: measurements stored per (target, space), and the predictors fitted
on them. Plain functions of an open `Session` (a `Database.read()` or `.write()` block)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hwnas.db.models import Measurement, Run, Space
from hwnas.db.models import Predictor as PredictorRow

CHUNK = 500  # sources looked up per IN (...) query


@dataclass(frozen=True)
class RunSpace:
    """A recorded run's id and name, and its space as stored (a `SearchSpace.to_dict()`)."""

    id: int
    name: str
    space: dict[str, Any]


@dataclass(frozen=True)
class NewMeasurement:
    """One measurement to record: the columns of `Measurement` but its id and target."""

    run_id: int | None
    space_key: str
    subnet_key: str
    subnet: dict[str, Any]
    kind: str
    weights: str
    median_ms: float
    cv: float
    iqr_ms: float
    n_reps: int
    remeasured: bool
    fingerprint: dict[str, Any]
    source: str


@dataclass(frozen=True)
class Measured:
    """A stored measurement as a predictor's data reads it."""

    kind: str
    subnet_key: str
    subnet: dict[str, Any]
    median_ms: float


def run_spaces(s: Session) -> list[RunSpace]:
    """Every recorded run with its space, oldest first."""
    rows = s.execute(select(Run.id, Run.name, Run.space).order_by(Run.id)).all()
    return [RunSpace(rid, name, space) for rid, name, space in rows]


def stored_sources(s: Session, sources: Iterable[str]) -> set[str]:
    """Which of `sources` (a measurement's `job:ID`) are recorded already."""
    wanted, have = list(sources), set()
    for i in range(0, len(wanted), CHUNK):
        chunk = wanted[i : i + CHUNK]
        have |= set(s.scalars(select(Measurement.source).where(Measurement.source.in_(chunk))))
    return have


def add_measurement(s: Session, target_id: int, m: NewMeasurement) -> None:
    s.add(Measurement(target_id=target_id, **asdict(m)))


def measured_space_keys(s: Session, target_id: int) -> list[str]:
    """The keys of the spaces measured on the target, sorted."""
    keys = s.scalars(select(Measurement.space_key).where(
        Measurement.target_id == target_id, Measurement.space_key.is_not(None)
    ).distinct())  # fmt: skip
    return sorted(k for k in keys if k is not None)


def space_target_keys(s: Session, space_key: str) -> list[str]:
    """The keys of the targets with measurements of the space, sorted."""
    from hwnas.db.models import Target

    keys = s.scalars(select(Target.key).join(Measurement, Measurement.target_id == Target.id)
                     .where(Measurement.space_key == space_key).distinct())  # fmt: skip
    return sorted(keys)


def space_data(s: Session, key: str) -> dict[str, Any] | None:
    """The recorded space `key` as stored (a `SearchSpace.to_dict()`), or None."""
    return s.scalar(select(Space.space).where(Space.key == key))


def measurements(s: Session, target_id: int, space_key: str) -> list[Measured]:
    """Every measurement of the space on the target (subnets and blocks), oldest first."""
    rows = s.execute(
        select(Measurement.kind, Measurement.subnet_key, Measurement.subnet, Measurement.median_ms)
        .where(Measurement.target_id == target_id, Measurement.space_key == space_key)
        .order_by(Measurement.id)
    ).all()
    return [Measured(kind, key, subnet, ms) for kind, key, subnet, ms in rows]


def add_predictor(
    s: Session,
    target_id: int,
    space_key: str,
    kind: str,
    n_train: int,
    metrics: dict[str, Any],
    model: dict[str, Any],
    name: str | None = None,
) -> int:
    """Record a fitted predictor; its row id."""
    row = PredictorRow(target_id=target_id, space_key=space_key, kind=kind, name=name,
                       n_train=n_train, metrics=metrics, model=model)  # fmt: skip
    s.add(row)
    s.flush()
    return row.id


def predictor_row(s: Session, predictor_id: int) -> PredictorRow | None:
    return s.get(PredictorRow, predictor_id)


def latest_predictor_id(
    s: Session, target_id: int, kind: str, space_key: str | None = None
) -> int | None:
    """The target's newest unnamed predictor of `kind` (for `space_key`; None: any space)."""
    query = select(PredictorRow.id).where(
        PredictorRow.target_id == target_id, PredictorRow.kind == kind, PredictorRow.name.is_(None)
    )
    if space_key is not None:
        query = query.where(PredictorRow.space_key == space_key)
    return s.scalar(query.order_by(PredictorRow.id.desc()).limit(1))
