"""What the dashboard, the report and the demo read: plain functions of an open `Database` (or
a `Session`) returning ORM rows, named tuples or plain values. Every read runs in a read-only
session (never a write lock, so a search writing to the same SQLite file is neither slowed nor
broken)."""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import String, case, cast, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from hwnas.db.models import (
    AccuracyPredictor,
    Candidate,
    Checkpoint,
    EpochMetric,
    Export,
    Measurement,
    Predictor,
    Run,
    Search,
)
from hwnas.db.models import Target as TargetRow
from hwnas.db.session import Database

# ---- by name ----------------------------------------------------------------------------------


def run_named(s: Session, name: str) -> Run | None:
    return s.scalars(select(Run).where(Run.name == name)).one_or_none()


def search_named(s: Session, name: str) -> Search | None:
    return s.scalars(select(Search).where(Search.name == name)).one_or_none()


def search_run(s: Session, search: Search) -> Run:
    """The run a search searched (a run outlives its searches)."""
    run = s.get(Run, search.run_id)
    assert run is not None, f"search {search.name!r} lost its run"
    return run


def shown_url(url: str) -> str:
    """A database URL without its password, for text a user may share."""
    return make_url(url).render_as_string(hide_password=True)


def candidate_count(s: Session, search_id: int) -> int:
    q = select(func.count(Candidate.id)).where(Candidate.search_id == search_id)
    return s.scalar(q) or 0


def subnet_measurements(db: Database, run: str, target: str) -> int:
    """How many subnet measurements of run `run` target `target` holds."""
    with db.read() as s:
        q = (
            select(func.count(Measurement.id))
            .join(TargetRow, TargetRow.id == Measurement.target_id)
            .join(Run, Run.id == Measurement.run_id)
            .where(TargetRow.key == target, Run.name == run, Measurement.kind == "subnet")
        )
        return s.scalar(q) or 0


def export_at(s: Session, path: str, candidate: int) -> Export | None:
    """The first export of `candidate` written to `path`."""
    q = select(Export).where(Export.path == path, Export.candidate_id == candidate)
    return s.scalars(q).first()


# ---- searches and candidates ------------------------------------------------------------------


class SearchLine(NamedTuple):
    """A search with its run's name, candidate count and best feasible accuracy."""

    search: Search
    run: str
    candidates: int
    best_feasible: float | None


def search_lines(db: Database) -> list[SearchLine]:
    with db.read() as s:
        q = select(Candidate.search_id, func.max(Candidate.accuracy))
        best = dict(s.execute(q.where(Candidate.feasible).group_by(Candidate.search_id)).all())
        q = select(Candidate.search_id, func.count()).group_by(Candidate.search_id)
        counts = dict(s.execute(q).all())
        rows = s.execute(select(Search, Run.name).join(Run).order_by(Search.id)).all()
        return [SearchLine(x, run, counts.get(x.id, 0), best.get(x.id)) for x, run in rows]


class CandidatePoint(NamedTuple):
    """One candidate as the Pareto explorer plots it (plain columns, not an ORM object)."""

    candidate: int
    search: str
    trial: int
    key: str
    accuracy: float
    accuracy_supernet: float | None
    params: int
    macs: int
    feasible: bool
    pareto: bool
    round: int
    extrapolated: list[str] | None
    predicted_ms: dict[str, float]
    measured_ms: dict[str, float] | None


POINT_COLUMNS = (Candidate.id, Search.name, Candidate.trial_number, Candidate.subnet_key,
                 Candidate.accuracy, Candidate.accuracy_supernet, Candidate.params,
                 Candidate.macs, Candidate.feasible, Candidate.pareto, Candidate.round,
                 Candidate.extrapolated, Candidate.predicted_ms,
                 Candidate.measured_ms)  # fmt: skip


def candidate_points(db: Database, search_names: list[str]) -> list[CandidatePoint]:
    """Every candidate of the named searches, oldest first (10,000 load in a fraction of a
    second)."""
    with db.read() as s:
        q = (
            select(*POINT_COLUMNS)
            .join(Search)
            .where(Search.name.in_(search_names))
            .order_by(Candidate.id)
        )
        return [CandidatePoint(*r) for r in s.execute(q).all()]


def candidates_version(db: Database, search_names: list[str]) -> tuple[Any, ...]:
    """Changes whenever the candidates of these searches do (new trials, a new front, new
    measurements, a closed-loop round's re-scoring)."""
    with db.read() as s:
        q = (
            select(func.count(Candidate.id), func.max(Candidate.id),
                   func.sum(case((Candidate.pareto, 1), else_=0)),
                   func.sum(func.length(cast(Candidate.measured_ms, String))),
                   func.sum(Candidate.scored_round), func.max(Search.id),
                   func.count(Candidate.accuracy_supernet))
            .join(Search)
            .where(Search.name.in_(search_names))
        )  # fmt: skip
        return tuple(s.execute(q).one())


def candidate_subnet(db: Database, candidate_id: int) -> dict[str, Any] | None:
    with db.read() as s:
        row = s.get(Candidate, candidate_id)
        return None if row is None else dict(row.subnet)


def search_budgets(db: Database, names: list[str]) -> dict[str, dict[str, float]]:
    with db.read() as s:
        rows = s.scalars(select(Search).where(Search.name.in_(names)))
        return {x.name: dict(x.budgets) for x in rows}


def search_candidates(s: Session, search_id: int) -> list[Candidate]:
    """A search's candidates in trial order."""
    q = select(Candidate).where(Candidate.search_id == search_id)
    return list(s.scalars(q.order_by(Candidate.trial_number)))


def exports_of(s: Session, candidates: set[int] | None = None) -> list[Export]:
    """Every export (of these candidates), oldest first."""
    q = select(Export).order_by(Export.id)
    if candidates is not None:
        q = q.where(Export.candidate_id.in_(candidates))
    return list(s.scalars(q))


def candidate_exports(db: Database, candidate: int) -> list[Export]:
    with db.read() as s:
        return exports_of(s, {candidate})


def accuracy_predictor(db: Database, predictor_id: int) -> AccuracyPredictor | None:
    with db.read() as s:
        return s.get(AccuracyPredictor, predictor_id)


# ---- latency ----------------------------------------------------------------------------------


def target_keys_by_name(db: Database) -> list[str]:
    with db.read() as s:
        return list(s.scalars(select(TargetRow.key).order_by(TargetRow.key)))


def target_measurements(db: Database, target: str) -> list[Measurement]:
    """The subnet measurements on `target`, oldest first."""
    with db.read() as s:
        q = (
            select(Measurement)
            .join(TargetRow)
            .where(TargetRow.key == target, Measurement.kind == "subnet")
            .order_by(Measurement.id)
        )
        return list(s.scalars(q))


def own_predictors(s: Session, target: str, space_key: str | None = None) -> list[Predictor]:
    """The target's own predictors (not a search's round refits), oldest first; of one space
    if `space_key` says so."""
    q = select(Predictor).join(TargetRow).where(TargetRow.key == target, Predictor.name.is_(None))
    if space_key is not None:
        q = q.where(Predictor.space_key == space_key)
    return list(s.scalars(q.order_by(Predictor.id)))


# ---- runs -------------------------------------------------------------------------------------


def all_runs(db: Database) -> list[Run]:
    with db.read() as s:
        return list(s.scalars(select(Run).order_by(Run.id)))


def run_epochs(db: Database, run: str) -> list[EpochMetric]:
    with db.read() as s:
        q = select(EpochMetric).join(Run).where(Run.name == run).order_by(EpochMetric.epoch)
        return list(s.scalars(q))


def run_checkpoints(db: Database, run: str) -> list[Checkpoint]:
    with db.read() as s:
        q = select(Checkpoint).join(Run).where(Run.name == run).order_by(Checkpoint.step)
        return list(s.scalars(q))
