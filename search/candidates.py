"""A search's candidates in the hwnas tables: one row per finished trial, the front marked.

Workers insert a row as each trial finishes (so a dashboard sees the search live); `sync`
fills in any finished trial whose row is missing (a worker killed between Optuna's `tell` and
its callback), so the table always matches the study. The Pareto front is over feasible
candidates, one per distinct subnet.
"""

from __future__ import annotations

import contextlib

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import IntegrityError

from hwnas.db import search_store as store
from hwnas.db.models import Candidate
from hwnas.db.session import Database
from hwnas.search.objective import Problem
from hwnas.search.pareto import pareto_mask


def candidate_row(
    search_id: int, trial: FrozenTrial, problem: Problem, round_: int = 0
) -> Candidate:
    """The row of a finished trial; `round_` is the round whose study ran it (a trial copied
    into a later round's study says its own round in the `round` attribute)."""
    c = trial.user_attrs["candidate"]
    round_ = int(trial.user_attrs.get("round", round_))
    return Candidate(
        search_id=search_id,
        trial_number=trial.number,
        subnet_key=c["key"],
        subnet=c["subnet"],
        accuracy=float(c["accuracy"]),
        # a trial of an hwnas before accuracy predictors was scored by the supernet
        accuracy_supernet=c.get("accuracy_supernet", c["accuracy"]),
        params=int(c["params"]),
        macs=int(c["macs"]),
        predicted_ms=dict(c["latency_ms"]),
        measured_ms=None,
        extrapolated=list(c.get("extrapolated", [])),
        round=round_,
        scored_round=int(trial.user_attrs.get("scored_round", round_)),
        feasible=problem.feasible(c["latency_ms"]),
    )


def finished(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.state == TrialState.COMPLETE and "candidate" in t.user_attrs]


class Recorder:
    """Optuna callback: record each finished trial of this worker as a candidate."""

    def __init__(self, db: Database, search_id: int, problem: Problem, round_: int = 0) -> None:
        self.db, self.search_id, self.problem, self.round = db, search_id, problem, round_

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state != TrialState.COMPLETE or "candidate" not in trial.user_attrs:
            return
        # another machine's sync may have recorded it first
        with contextlib.suppress(IntegrityError), self.db.write() as s:
            s.add(candidate_row(self.search_id, trial, self.problem, self.round))


def sync(
    db: Database, search_id: int, trials: list[FrozenTrial], problem: Problem, round_: int = 0
) -> int:
    """Insert the rows of finished trials that have none; returns how many were added."""
    try:
        return _sync(db, search_id, trials, problem, round_)
    except IntegrityError:  # a worker elsewhere recorded one meanwhile: read again
        return _sync(db, search_id, trials, problem, round_)


def _sync(
    db: Database, search_id: int, trials: list[FrozenTrial], problem: Problem, round_: int
) -> int:
    with db.write() as s:
        have = store.trial_numbers(s, search_id)
        new = [t for t in finished(trials) if t.number not in have]
        for t in new:
            s.add(candidate_row(search_id, t, problem, round_))
    return len(new)


def objective_matrix(rows: list[Candidate], problem: Problem, by_supernet: bool = False):
    """Every objective in minimise form (accuracy negated; `by_supernet`: the supernet's
    accuracy, nan where it has none)."""
    out = []
    for r in rows:
        acc = r.accuracy if not by_supernet else r.accuracy_supernet
        values = problem.values(
            {"accuracy": np.nan if acc is None else acc, "latency_ms": r.predicted_ms,
             "params": r.params, "macs": r.macs}
        )  # fmt: skip
        out.append([-values[0], *values[1:]])
    return np.asarray(out, float).reshape(len(rows), len(problem.directions))


def mark_pareto(db: Database, search_id: int, problem: Problem, by_supernet: bool = False) -> int:
    """Set `pareto` on the front of feasible candidates (the earliest trial of each subnet);
    returns the front's size. `by_supernet`: the front of those with a supernet accuracy, on
    it (a predictor-driven search's final front, `accuracy_fit.rescore_front`)."""
    with db.write() as s:
        rows = store.candidates(s, search_id)
        seen: set[str] = set()
        first = []
        for r in rows:
            first.append(r.subnet_key not in seen)
            seen.add(r.subnet_key)
        ok = np.asarray([r.feasible for r in rows], bool) & np.asarray(first, bool)
        if by_supernet:
            ok &= np.asarray([r.accuracy_supernet is not None for r in rows], bool)
        points = objective_matrix(rows, problem, by_supernet)
        mask = pareto_mask(points, ok) if rows else np.zeros(0, bool)
        for r, m in zip(rows, mask, strict=True):
            r.pareto = bool(m)
        return int(mask.sum())
