"""The closed loop of a search: rounds of trials, each ended by measuring its Pareto front.

A round runs trials, marks the front and measures it on every target this machine can run.
When each front subnet's measurement is within +-10% of its prediction the loop stops; else
the measurements (front subnets first, the extrapolated ones before the others, then the
extrapolated subnets just behind the front) join the target's data, the predictor is refitted
and stored as `SEARCH/rN`, every candidate is re-scored, and round N continues the search.

Each round has its own Optuna study (round 0's is named like the search, round N's
`SEARCH~rN`). A finished trial's values cannot change in Optuna's storage, and they are the
record of what the sampler was told: so round N's study starts with a copy of every earlier
trial carrying the values and constraints of the re-scored candidate (and the trial's own
round), trial numbers run on unchanged, and the sampler learns from the new predictions.
The `hwnas_search_rounds` rows say which study and which predictors each round used and how
its front agreed with the measurements; `Candidate.round` / `scored_round` say which round
ran a trial and which round's predictor gave its current `predicted_ms`.

A search driven by an accuracy predictor loops on accuracy too, measured or not: each round's
front is re-scored with the supernet (`accuracy_fit.rescore_front`), and while a
round brings new subnets onto that front (`record_accuracy_front`, `settled`) the accuracy
predictor is refitted with every re-scored subnet and the next round is told the supernet's
accuracy wherever a trial has one (`told`): it searches on around the subnets the supernet
found best, as a supernet-driven search does, and evaluates only what comes near its front.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState, create_trial
from sqlalchemy.exc import IntegrityError

from hwnas.db import search_store as store
from hwnas.db.models import Candidate, SearchRound, utcnow
from hwnas.db.session import Database
from hwnas.latency.predictor import Predictor
from hwnas.latency.targets import Target
from hwnas.search import candidates
from hwnas.search.accuracy_predictor import AccuracyPredictor
from hwnas.search.objective import Problem, score
from hwnas.search.pareto import pareto_mask
from hwnas.search.result import Result
from hwnas.search.services.prediction import refit_main
from hwnas.search.services.remeasure import Checks, FrontCheck
from hwnas.search.storage import optuna_storage
from hwnas.supernet.space import SearchSpace

BEHIND_MAX = 4  # extrapolated subnets behind the front measured between rounds, at most


def study_name(search: str, round_: int) -> str:
    return search if round_ == 0 else f"{search}~r{round_}"


@dataclass(frozen=True)
class AccuracyFront(Result):
    """A predictor-driven round's front re-scored with the supernet: subnets evaluated then,
    the front's size and how many of its subnets are new to it (0: settled)."""

    rescored: int
    n: int
    new: int
    keys: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AccuracyFront:
        return cls(data["rescored"], data["n"], data["new"], tuple(data.get("keys", ())))


@dataclass(frozen=True)
class FrontCounts(Result):
    """An accuracy front as a round's record shows it (its subnet keys left out)."""

    rescored: int
    n: int
    new: int


@dataclass(frozen=True)
class PredictorRef(Result):
    id: int
    name: str | None


@dataclass(frozen=True)
class RoundRecord(Result):
    """One round of a search as `hwnas search` and `hwnas pareto` report it."""

    round: int
    study: str
    trials: int
    predictors: dict[str, PredictorRef]
    accuracy_predictor: int | None
    agreement: Checks | None
    accuracy_front: FrontCounts | None


@dataclass(frozen=True)
class RoundState:
    round: int
    study: str
    predictors: tuple[tuple[str, int], ...]  # target key -> predictor row id
    trials: int  # the study's finished trials at which the round ends
    agreement: Checks | None = None  # target key -> the measured front's agreement
    accuracy_predictor: int | None = None  # its row id; None: the supernet scores accuracy
    accuracy_front: AccuracyFront | None = None  # its front re-scored with the supernet


def _checks(data: Mapping[str, Any] | None) -> Checks | None:
    return None if data is None else {k: FrontCheck.from_json(v) for k, v in data.items()}


def _json(checks: Checks) -> dict[str, Any]:
    return {k: c.to_json() for k, c in checks.items()}


def _state(row: SearchRound) -> RoundState:
    preds = tuple((k, int(v)) for k, v in row.predictors.items())
    front = AccuracyFront.from_json(row.accuracy_front) if row.accuracy_front else None
    return RoundState(row.round, row.study_name, preds, row.trials, _checks(row.agreement),
                      row.accuracy_predictor, front)  # fmt: skip


def begin(
    db: Database, search_id: int, name: str, predictors: dict[str, int], trials: int, step: int,
    accuracy_predictor: int | None = None,
) -> RoundState:  # fmt: skip
    """The round to work in: the latest one, or a new round 0 scored by `predictors` (and
    `accuracy_predictor`, None: the supernet). Round
    N ends at `trials + N * step` finished trials (as the arguments of this invocation say:
    asked for more than it ran, its front is measured again). Another machine joining the same
    search may add round 0 meanwhile: then its row is the one to work in."""
    try:
        return _begin(db, search_id, name, predictors, trials, step, accuracy_predictor)
    except IntegrityError:  # round 0 added by another machine since this one looked
        return _begin(db, search_id, name, predictors, trials, step, accuracy_predictor)


def _begin(
    db: Database, search_id: int, name: str, predictors: dict[str, int], trials: int, step: int,
    accuracy_predictor: int | None,
) -> RoundState:  # fmt: skip
    with db.write() as s:
        row = store.latest_round(s, search_id)
        if row is None:
            row = SearchRound(search_id=search_id, round=0, study_name=study_name(name, 0),
                              predictors=predictors, trials=trials,
                              accuracy_predictor=accuracy_predictor)  # fmt: skip
            s.add(row)
        quota = trials + row.round * step
        if quota > row.trials:
            row.agreement, row.accuracy_front, row.finished_at = None, None, None
        row.trials = quota
        s.flush()
        return _state(row)


def history(db: Database, search_id: int) -> tuple[RoundRecord, ...]:
    """Every round of a search: its study, predictors (ids and names), trials, agreement."""
    with db.read() as s:
        names = store.predictor_names(s)
        return tuple(
            RoundRecord(
                round=r.round,
                study=r.study_name,
                trials=r.trials,
                predictors={k: PredictorRef(v, names.get(v)) for k, v in r.predictors.items()},
                accuracy_predictor=r.accuracy_predictor,
                agreement=_checks(r.agreement),
                accuracy_front=_front_counts(r.accuracy_front),
            )
            for r in store.rounds(s, search_id)
        )


def _front_counts(front: Mapping[str, Any] | None) -> FrontCounts | None:
    return None if front is None else FrontCounts(front["rescored"], front["n"], front["new"])


def record(db: Database, search_id: int, round_: int, agreement: Checks) -> None:
    with db.write() as s:
        row = store.round_row(s, search_id, round_)
        row.agreement, row.finished_at = _json(agreement), utcnow()


def record_accuracy_front(
    db: Database, search_id: int, round_: int, rescored: int
) -> AccuracyFront:
    """After a predictor-driven round's front was re-scored with the supernet (`rescored`
    subnets evaluated now): the front's size and how many of its subnets are new to it, i.e.
    were not on the front the previous round recorded. Stored on the round; returned."""
    with db.write() as s:
        keys = store.front_keys(s, search_id)
        before = store.round_row(s, search_id, round_ - 1).accuracy_front if round_ else None
        old = set((before or {}).get("keys", ()))
        front = AccuracyFront(rescored, len(keys), len(keys - old), tuple(sorted(keys)))
        store.round_row(s, search_id, round_).accuracy_front = front.to_json()
    return front


def settled(front: AccuracyFront | None) -> bool:
    """A predictor-driven search's front is settled when a round brought no new subnet onto
    the front re-scored with the supernet (None: a supernet-driven round, always settled)."""
    return front is None or front.new == 0


def told(cand: Mapping[str, Any]) -> Mapping[str, Any]:
    """A candidate as the sampler is told of it: with its supernet accuracy where it has one
    (a predictor-driven search's re-scored subnets), else the accuracy that scored it."""
    sup = cand.get("accuracy_supernet")
    return cand if sup is None else {**cand, "accuracy": sup}


def agrees(agreement: Checks | None) -> bool:
    """Every measured target's front within +-10% of its predictions."""
    if not agreement:
        return False
    return all(a.agrees for a in agreement.values())


# ---- between rounds ---------------------------------------------------------------------------


def behind_front(
    db: Database, search_id: int, problem: Problem, limit: int, by_supernet: bool = False
) -> list[int]:
    """Up to `limit` extrapolated feasible candidates of the layer just behind the front (the
    front of the rest), most accurate first: the subnets a refit most likely moves onto it.
    `by_supernet`: among those with a supernet accuracy, by it (a predictor-driven search)."""
    rows = store.read_candidates(db, search_id)
    rest = [r for r in rows if r.feasible and not r.pareto]
    if by_supernet:
        rest = [r for r in rest if r.accuracy_supernet is not None]
    if not rest or limit <= 0:
        return []
    unique = list({r.subnet_key: r for r in sorted(rest, key=lambda r: -r.trial_number)}.values())
    points = candidates.objective_matrix(unique, problem, by_supernet)
    mask = pareto_mask(points, np.ones(len(unique), bool))
    layer = [r for r, m in zip(unique, mask, strict=True) if m and r.extrapolated]
    return [r.id for r in sorted(layer, key=lambda r: points[unique.index(r)][0])[:limit]]


def refit(
    db: Database, search: str, search_id: int, state: RoundState, round_: int
) -> dict[str, int]:
    """Predictor ids for `round_`: refitted (`SEARCH/rN`, reused when a run killed after the
    refit stored it) for targets whose front this search measured and that did not agree in
    `state`'s round; the old one otherwise (a target whose front agreed keeps its predictor
    while the loop goes on for another: the demo's tflite front, 10 of 10 within 10% after
    round 2, fell to 6 of 9 after a refit it did not need)."""
    rows = store.read_candidates(db, search_id)
    space_key = SearchSpace.from_dict(store.search_space(db, search_id)).key
    out = dict(state.predictors)
    agreed = {k for k, a in (state.agreement or {}).items() if a.agrees}
    for key in set(out) - agreed:
        focus = {r.subnet_key for r in rows if r.measured_ms and key in r.measured_ms}
        if not focus:
            continue
        name = f"{search}/r{round_}"
        target = Target.parse(key)
        out[key] = store.named_predictor(db, key, name) or refit_main(
            db, target, space_key, name, focus
        )
    return out


def rescore(
    db: Database, search_id: int, predictors: Mapping[str, Predictor], round_: int,
    problem: Problem, accuracy: AccuracyPredictor | None = None,
) -> dict[int, dict[str, Any]]:  # fmt: skip
    """Re-score every candidate with `predictors` (and `accuracy`, where the search is driven
    by an accuracy predictor): predictions, extrapolation flags, feasibility; mark the front
    again. Returns trial number -> the re-scored candidate."""
    with db.write() as s:
        rows = store.candidates(s, search_id)
        if rows:
            space = next(iter(predictors.values())).space
            subnets = [space.subnet_from_dict(r.subnet) for r in rows]
            lat, flags = score(predictors, subnets)
            acc = accuracy.predict(subnets) if accuracy is not None else None
        out = {}
        for i, r in enumerate(rows):
            if acc is not None:
                r.accuracy = float(acc[i])
            r.predicted_ms = dict(r.predicted_ms) | lat[i]
            r.extrapolated = list(flags[i])
            r.feasible = problem.feasible(r.predicted_ms)
            r.scored_round = round_
            out[r.trial_number] = _candidate_dict(r)
    candidates.mark_pareto(db, search_id, problem, by_supernet=accuracy is not None)
    return out


def _candidate_dict(r: Candidate) -> dict[str, Any]:  # as a trial carries it (`Evaluation`)
    return {"subnet": r.subnet, "key": r.subnet_key, "accuracy": r.accuracy,
            "accuracy_supernet": r.accuracy_supernet,
            "latency_ms": dict(r.predicted_ms), "params": r.params, "macs": r.macs,
            "extrapolated": list(r.extrapolated)}  # fmt: skip


def next_study(
    db_url: str, old: optuna.Study, name: str, problem: Problem,
    rescored: Mapping[int, Mapping[str, Any]], round_: int,
) -> optuna.Study:  # fmt: skip
    """Round `round_`'s study: every trial of `old` copied in order, finished ones with their
    re-scored values (a half-made copy from a killed run is made again)."""
    storage = optuna_storage(db_url)
    with contextlib.suppress(KeyError):
        optuna.delete_study(study_name=name, storage=storage)
    new = optuna.create_study(study_name=name, storage=storage, directions=problem.directions)
    new.set_user_attr("hwnas", old.user_attrs.get("hwnas", {}) | {"round": round_})
    new.add_trials(copy_trials(old.get_trials(deepcopy=False), problem, rescored, round_))
    return new


def copy_trials(
    trials: list[FrozenTrial], problem: Problem, rescored: Mapping[int, Mapping[str, Any]],
    round_: int,
) -> list[FrozenTrial]:  # fmt: skip
    """`trials` as round `round_`'s study starts with them: finished ones with the values of
    their re-scored candidate (`rescored`: trial number -> candidate dict) as the sampler is
    `told` of it, the rest as failed."""
    return [_copy(t, problem, rescored, round_) for t in trials]


def _copy(
    t: FrozenTrial, problem: Problem, rescored: Mapping[int, Mapping[str, Any]], round_: int
) -> FrozenTrial:
    cand = rescored.get(t.number)
    attrs = {"round": int(t.user_attrs.get("round", 0)), "scored_round": round_}
    if t.state != TrialState.COMPLETE or cand is None:
        return create_trial(state=TrialState.FAIL, user_attrs=attrs)
    cons = problem.constraints(cand["latency_ms"])
    return create_trial(
        values=problem.values(told(cand)),
        params=t.params,
        distributions=t.distributions,
        user_attrs={"candidate": cand} | attrs,
        constraints=cons or None,
    )


def start(
    db: Database, search_id: int, state: RoundState, predictors: dict[str, int], trials: int,
    accuracy_predictor: int | None = None,
) -> RoundState:  # fmt: skip
    """Record round `state.round + 1` and point the search at its study."""
    r = state.round + 1
    with db.write() as s:
        search = store.search_by_id(s, search_id)
        name = study_name(search.name, r)
        s.add(SearchRound(search_id=search_id, round=r, study_name=name,
                          predictors=predictors, trials=trials,
                          accuracy_predictor=accuracy_predictor))  # fmt: skip
        search.study_name = name
    return RoundState(r, name, tuple(predictors.items()), trials, None, accuracy_predictor)
