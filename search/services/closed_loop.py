"""The closed loop of a search, as explicit states: searching, measuring the front,
refitting, settled.

    SEARCHING --trials done--> MEASURING --front agrees and settled, or rounds spent--> SETTLED
        ^                          |                     (nothing to measure, supernet-driven)
        |                          v
        +------next round------ REFITTING

- SEARCHING runs the round's trials (`trial_workers`). Unmeasured and supernet-driven, a
  search has nothing to close the loop on: it is settled after one round.
- MEASURING syncs the candidates and marks the front; a predictor-driven round re-scores its
  front with the supernet (`accuracy_fit.rescore_front`, recorded once per round); the front
  is measured on this machine's targets (`remeasure`) and the agreement recorded. The next
  state is `after_front`'s: settled where every measured front agrees (within 10%) and a
  predictor-driven front brought no new subnet, or where the rounds are spent.
- REFITTING measures the extrapolated subnets just behind a front that disagreed, refits the
  latency predictors that disagreed and the accuracy predictor, re-scores every candidate,
  and starts the next round's study with the re-scored trials (`rounds`).

Each state's work is recorded before the next begins (`hwnas_search_rounds`), so a search
killed anywhere resumes in the round it was in (`rounds.begin`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

import optuna
from optuna.trial import FrozenTrial

from hwnas.db.session import Database, open_db
from hwnas.latency.protocol import Protocol
from hwnas.search import candidates
from hwnas.search.accuracy_predictor import AccuracyPredictor
from hwnas.search.services import accuracy_fit
from hwnas.search.services import rounds as rounds_
from hwnas.search.services.prediction import load_predictor_by_id
from hwnas.search.services.recorded_runs import load_run
from hwnas.search.services.remeasure import (
    Checks,
    front_rows,
    measure_candidates,
    remeasure_front,
)
from hwnas.search.services.trial_workers import SearchSpec, run_round_trials
from hwnas.search.storage import optuna_storage

logger = logging.getLogger(__name__)


class Phase(Enum):
    SEARCHING = "searching"
    MEASURING = "measuring the front"
    REFITTING = "refitting"
    SETTLED = "settled"


@dataclass(frozen=True)
class Loop:
    """What stays fixed through a search's loop."""

    spec: SearchSpec  # its `round` is the state's
    search_id: int
    protocols: Mapping[str, Protocol] = dataclasses.field(default_factory=dict)

    def at(self, state: rounds_.RoundState) -> SearchSpec:
        return dataclasses.replace(self.spec, round=state)


@dataclass(frozen=True)
class LoopRun:
    """Where the loop ended, the trials it ran (per round) and the phases it went through."""

    spec: SearchSpec
    new_trials: tuple[tuple[FrozenTrial, ...], ...]
    phases: tuple[Phase, ...]


def run(loop: Loop, state: rounds_.RoundState) -> LoopRun:
    """Run the loop from `state` (a new or resumed round) until it is settled."""
    phase, new, phases = Phase.SEARCHING, [], [Phase.SEARCHING]
    while phase is not Phase.SETTLED:
        spec = loop.at(state)
        if phase is Phase.SEARCHING:
            new.append(tuple(run_round_trials(spec)))
            phase = after_trials(spec)
        elif phase is Phase.MEASURING:
            state, phase = measure_front(loop, state)
        else:
            state, phase = refit(loop, state), Phase.SEARCHING
        phases.append(phase)
    return LoopRun(loop.at(state), tuple(new), tuple(phases))


def after_trials(spec: SearchSpec) -> Phase:
    """Measuring, unless there is nothing to measure and the supernet scored the trials."""
    if spec.config.measure or spec.accuracy_predictor is not None:
        return Phase.MEASURING
    return Phase.SETTLED


def after_front(spec: SearchSpec, agreement: Checks, front: rounds_.AccuracyFront | None) -> Phase:
    """Settled where the measured front agrees with its predictions (or nothing was measured)
    and a predictor-driven front brought no new subnet, or where the rounds are spent."""
    agreed = rounds_.agrees(agreement) or not spec.config.measure
    if (agreed and rounds_.settled(front)) or spec.round_no >= spec.config.rounds:
        return Phase.SETTLED
    return Phase.REFITTING


def measure_front(loop: Loop, state: rounds_.RoundState) -> tuple[rounds_.RoundState, Phase]:
    """Mark the round's front, re-score it with the supernet (predictor-driven) and measure
    it; record both once (a resumed round keeps its record)."""
    spec = loop.at(state)
    with open_db(spec.db_url, create=False) as db:
        sync_and_mark(db, spec, loop.search_id)
        front = _accuracy_front(db, spec, loop.search_id, state)
        agreement = state.agreement
        if agreement is None:
            measure = spec.config.measure
            agreement = remeasure_front(db, loop.search_id, spec.problem, loop.protocols) \
                if measure else {}  # fmt: skip
            rounds_.record(db, loop.search_id, state.round, agreement)
    _log_round(state.round, agreement)
    state = dataclasses.replace(state, agreement=agreement, accuracy_front=front)
    return state, after_front(spec, agreement, front)


def refit(loop: Loop, state: rounds_.RoundState) -> rounds_.RoundState:
    """Measure the extrapolated subnets behind a front that disagreed, refit what disagreed,
    re-score every candidate and begin the next round."""
    spec, r = loop.at(state), state.round + 1
    with open_db(spec.db_url, create=False) as db:
        _measure_behind(db, loop, state)
        ids = rounds_.refit(db, spec.name, loop.search_id, state, r)
        predictors = {k: load_predictor_by_id(db, i)[0] for k, i in ids.items()}
        acc_id, acc = _refit_accuracy(db, spec, r)
        rescored = rounds_.rescore(db, loop.search_id, predictors, r, spec.problem, acc)
        study = optuna.load_study(study_name=spec.study_name, storage=optuna_storage(db.url))
        rounds_.next_study(db.url, study, rounds_.study_name(spec.name, r), spec.problem,
                           rescored, r)  # fmt: skip
        step = spec.config.step
        logger.info(
            f"round {r}: predictors refitted, {len(rescored)} trials re-scored; {step} more trials"
        )
        return rounds_.start(db, loop.search_id, state, ids, state.trials + step, acc_id)


def _measure_behind(db: Database, loop: Loop, state: rounds_.RoundState) -> None:
    """The extrapolated subnets behind a front that disagreed, for that target's refit."""
    spec = loop.at(state)
    if not spec.config.measure or rounds_.agrees(state.agreement):
        return
    limit = min(len(front_rows(db, loop.search_id)), rounds_.BEHIND_MAX)
    by_supernet = spec.accuracy_predictor is not None
    behind = rounds_.behind_front(db, loop.search_id, spec.problem, limit, by_supernet)
    if behind:
        logger.info(f"round {state.round}: {len(behind)} extrapolated subnets behind the front")
        measure_candidates(db, loop.search_id, spec.problem.targets, behind, loop.protocols)


def sync_and_mark(db: Database, spec: SearchSpec, search_id: int) -> None:
    """The candidates table made to match the round's study, and its front marked."""
    study = optuna.load_study(study_name=spec.study_name, storage=optuna_storage(spec.db_url))
    candidates.sync(db, search_id, study.get_trials(deepcopy=False), spec.problem, spec.round_no)
    candidates.mark_pareto(db, search_id, spec.problem)


def _accuracy_front(
    db: Database, spec: SearchSpec, search_id: int, state: rounds_.RoundState
) -> rounds_.AccuracyFront | None:
    """A predictor-driven round's front re-scored with the supernet and recorded (once: a
    resumed round keeps its record); None for a supernet-driven search."""
    if spec.accuracy_predictor is None:
        return None
    rescored = supernet_front(db, spec, search_id)
    front = state.accuracy_front
    if front is None:
        front = rounds_.record_accuracy_front(db, search_id, state.round, rescored)
    logger.info(
        f"round {state.round}: front re-scored with the supernet: {front.n} subnets, "
        f"{front.new} new to it" + ("" if front.new else "; settled")
    )
    return front


def supernet_front(db: Database, spec: SearchSpec, search_id: int) -> int:
    """A predictor-driven search's front re-scored with the supernet (`accuracy_supernet`);
    how many subnets were evaluated."""
    if spec.accuracy_predictor is None:
        return 0
    run = load_run(db, spec.run)
    band = accuracy_fit.load(db, run, spec.accuracy_predictor).band
    n = accuracy_fit.rescore_front(db, search_id, run, band, spec.problem)
    if n:
        logger.info(
            f"front: {n} subnets on or within {band:.4f} of the front evaluated with the "
            f"supernet; the front is marked on their supernet accuracy"
        )
    return n


def _refit_accuracy(
    db: Database, spec: SearchSpec, round_: int
) -> tuple[int | None, AccuracyPredictor | None]:
    """(row id, predictor) of the accuracy predictor refitted with the fronts re-scored so
    far, for a predictor-driven search; (None, None) for a supernet-driven one."""
    if spec.accuracy_predictor is None:
        return None, None
    run = load_run(db, spec.run)
    pid = accuracy_fit.refit(db, run, f"{spec.name}/r{round_}", spec.accuracy_predictor)
    return pid, accuracy_fit.load(db, run, pid).predictor


def _log_round(r: int, agreement: Checks) -> None:
    for key, a in sorted(agreement.items()):
        fresh = a.fresh or 0
        new = (f"; of the {fresh} measured now, {fresh * (a.fresh_within10 or 0):.0f}"
               if fresh else "; none new")  # fmt: skip
        logger.info(
            f"round {r}: front on {key}: {a.n * a.within10_of_predicted:.0f} of {a.n} "
            f"within 10% of predicted (worst {100 * a.worst_off:.1f}% off){new}"
        )
        for d in a.disagree:
            logger.info(
                f"round {r}:   candidate {d.candidate}: predicted {d.predicted_ms:.4g} ms, "
                f"measured {d.measured_ms:.4g} ms (prediction {100 * d.off:+.0f}%)"
            )
