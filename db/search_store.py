"""The queries of a search and its closed loop, as plain functions.

Those taking a `Session` run inside the caller's transaction (`with db.write() as s:`): the
caller reads rows, changes them, and the transaction writes them. Those taking a `Database`
open their own. Rows come back as ORM objects (`hwnas.db.models`) or, where a caller wants a
value to keep after its session closes, as frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hwnas.db.models import (
    AccuracyPredictor,
    AccuracySample,
    Candidate,
    Predictor,
    Run,
    Search,
    SearchRound,
    Target,
)
from hwnas.db.session import Database

# ---- searches ---------------------------------------------------------------------------------


def search_row(s: Session, name: str) -> Search | None:
    return s.scalars(select(Search).where(Search.name == name)).one_or_none()


def search_names(s: Session) -> list[str]:
    return list(s.scalars(select(Search.name).order_by(Search.id)).all())


def search_id(db: Database, name: str) -> int | None:
    with db.read() as s:
        return s.scalar(select(Search.id).where(Search.name == name))


def set_status(db: Database, search_id: int, status: str) -> None:
    with db.write() as s:
        row = s.get(Search, search_id)
        if row is not None:
            row.status = status


@dataclass(frozen=True)
class RoundsBegun:
    """What an existing search's rounds say before it continues (None: no search or round)."""

    first_predictors: dict[str, int]  # target key -> the predictor round 0 used
    accuracy_predictor: int | None  # the latest round's accuracy predictor


def rounds_begun(db: Database, name: str) -> RoundsBegun:
    with db.read() as s:
        row = search_row(s, name)
        if row is None or not row.rounds:
            return RoundsBegun({}, None)
        first = {k: int(v) for k, v in row.rounds[0].predictors.items()}
        return RoundsBegun(first, row.rounds[-1].accuracy_predictor)


@dataclass(frozen=True)
class RoundRows:
    """What a worker of a search round reads, in one transaction: the search's id, the stored
    models (`to_dict()`) of the latency predictors the round uses, by
    target key (None: no such row), and of its accuracy predictor (None: the supernet
    scores)."""

    search_id: int
    predictors: dict[str, dict[str, Any] | None]
    accuracy: dict[str, Any] | None


def round_rows(
    db: Database, name: str, predictors: Mapping[str, int], accuracy_predictor: int | None
) -> RoundRows:
    """The rows a round of search `name` works from (the search exists: it is begun)."""
    with db.read() as s:
        search = search_row(s, name)
        assert search is not None, name
        models = {k: _model(s.get(Predictor, i)) for k, i in predictors.items()}
        acc = None if accuracy_predictor is None else s.get(AccuracyPredictor, accuracy_predictor)
        return RoundRows(search.id, models, _model(acc))


def _model(row: Predictor | AccuracyPredictor | None) -> dict[str, Any] | None:
    return None if row is None else row.model


def search_by_id(s: Session, search_id: int) -> Search:
    search = s.get(Search, search_id)
    assert search is not None, search_id
    return search


def search_run(s: Session, search_id: int) -> Run:
    run = s.get(Run, search_by_id(s, search_id).run_id)
    assert run is not None
    return run


# ---- candidates -------------------------------------------------------------------------------


def candidates(s: Session, search_id: int) -> list[Candidate]:
    """Every candidate of a search, by trial number."""
    return list(
        s.scalars(
            select(Candidate)
            .where(Candidate.search_id == search_id)
            .order_by(Candidate.trial_number)
        )
    )


def read_candidates(db: Database, search_id: int) -> list[Candidate]:
    with db.read() as s:
        return candidates(s, search_id)


def front(db: Database, search_id: int) -> list[Candidate]:
    """The candidates marked on the search's Pareto front."""
    with db.read() as s:
        return list(
            s.scalars(select(Candidate).where(Candidate.search_id == search_id, Candidate.pareto))
        )


def front_keys(s: Session, search_id: int) -> set[str]:
    return set(
        s.scalars(
            select(Candidate.subnet_key).where(Candidate.search_id == search_id, Candidate.pareto)
        )
    )


def trial_numbers(s: Session, search_id: int) -> set[int]:
    return set(s.scalars(select(Candidate.trial_number).where(Candidate.search_id == search_id)))


def feasible_candidates(db: Database, search_id: int) -> list[Any]:
    """(id, subnet, accuracy, predicted_ms, params, macs, accuracy_supernet) of the feasible
    candidates: what re-scoring a front with the supernet reads."""
    with db.read() as s:
        return list(
            s.execute(
                select(
                    Candidate.id, Candidate.subnet, Candidate.accuracy, Candidate.predicted_ms,
                    Candidate.params, Candidate.macs, Candidate.accuracy_supernet,
                ).where(Candidate.search_id == search_id, Candidate.feasible)
            ).all()
        )  # fmt: skip


def set_measured(db: Database, measured: dict[int, dict[str, float]]) -> None:
    """Candidate id -> target -> ms (an empty entry is left alone)."""
    with db.write() as s:
        for cid, ms in measured.items():
            row = s.get(Candidate, cid)
            if ms and row is not None:
                row.measured_ms = ms


def set_accuracy_supernet(db: Database, accuracy: dict[int, float]) -> None:
    with db.write() as s:
        for cid, acc in accuracy.items():
            row = s.get(Candidate, cid)
            if row is not None:
                row.accuracy_supernet = acc


# ---- rounds -----------------------------------------------------------------------------------


def latest_round(s: Session, search_id: int) -> SearchRound | None:
    return s.scalars(
        select(SearchRound)
        .where(SearchRound.search_id == search_id)
        .order_by(SearchRound.round.desc())
        .limit(1)
    ).first()


def round_row(s: Session, search_id: int, round_: int) -> SearchRound:
    return s.scalars(
        select(SearchRound).where(SearchRound.search_id == search_id, SearchRound.round == round_)
    ).one()


def rounds(s: Session, search_id: int) -> list[SearchRound]:
    return list(
        s.scalars(
            select(SearchRound)
            .where(SearchRound.search_id == search_id)
            .order_by(SearchRound.round)
        )
    )


def predictor_names(s: Session) -> dict[int, str | None]:
    return {i: n for i, n in s.execute(select(Predictor.id, Predictor.name)).all()}


def search_space(db: Database, search_id: int) -> dict[str, Any]:
    """The space (as stored) of the run a search searches."""
    with db.read() as s:
        return search_run(s, search_id).space


def named_predictor(db: Database, target_key: str, name: str) -> int | None:
    """The newest latency predictor of `target_key` stored as `name`."""
    with db.read() as s:
        return s.scalar(
            select(Predictor.id)
            .join(Target, Target.id == Predictor.target_id)
            .where(Target.key == target_key, Predictor.name == name)
            .order_by(Predictor.id.desc())
            .limit(1)
        )


# ---- accuracy samples and predictors ----------------------------------------------------------


def accuracy_samples(db: Database, run_id: int, step: int) -> list[AccuracySample]:
    with db.read() as s:
        return list(
            s.scalars(
                select(AccuracySample).where(
                    AccuracySample.run_id == run_id, AccuracySample.step == step
                )
            )
        )


def add_accuracy_sample(db: Database, sample: AccuracySample) -> None:
    with db.write() as s:
        s.add(sample)


def add_accuracy_predictor(db: Database, row: AccuracyPredictor) -> int:
    with db.write() as s:
        s.add(row)
        s.flush()
        return row.id


def newest_accuracy_predictor(db: Database, run_id: int) -> int | None:
    """The run's newest accuracy predictor fitted by `hwnas accuracy fit` (unnamed)."""
    with db.read() as s:
        return s.scalar(
            select(AccuracyPredictor.id)
            .where(AccuracyPredictor.run_id == run_id, AccuracyPredictor.name.is_(None))
            .order_by(AccuracyPredictor.id.desc())
            .limit(1)
        )


def accuracy_predictor(db: Database, predictor_id: int) -> AccuracyPredictor | None:
    with db.read() as s:
        return s.get(AccuracyPredictor, predictor_id)


def named_accuracy_predictor(db: Database, run_id: int, step: int, name: str) -> int | None:
    with db.read() as s:
        return s.scalar(
            select(AccuracyPredictor.id).where(
                AccuracyPredictor.run_id == run_id,
                AccuracyPredictor.name == name,
                AccuracyPredictor.step == step,
            )
        )
