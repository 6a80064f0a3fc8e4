"""A search round's trials: the worker processes that run them on one Optuna study.

Every worker (a local process, or the same command on another machine sharing a PostgreSQL
`--db`) loads the study from Optuna's RDB storage and runs trials until the study has the
round's number of finished ones; each finished trial is recorded as a candidate as it ends,
so a dashboard sees the search live. What a worker needs travels in a `SearchSpec`, a frozen
value that a spawned process receives pickled: the run's space, and for a supernet-driven
search the file of the accuracy oracle's inputs that the parent prepared once
(`batch_accuracy.OracleInputs`), so no worker decodes the run's data or reads its checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import multiprocessing
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import IntegrityError
from tqdm import tqdm

from hwnas.db import search_store as store
from hwnas.db.session import Database, open_db
from hwnas.latency.predictor import Predictor, PredictorError
from hwnas.latency.targets import Target
from hwnas.search import candidates
from hwnas.search.accuracy_predictor import AccuracyPredictor, AccuracyPredictorError
from hwnas.search.initial_design import enqueue_initial
from hwnas.search.objective import Problem, TrialEvaluator, make_objective
from hwnas.search.output import UserError
from hwnas.search.pareto import pareto_mask
from hwnas.search.samplers import make_sampler
from hwnas.search.search_config import SearchConfig
from hwnas.search.services.prediction import load_predictor_by_id, newest_predictor_id
from hwnas.search.services.recorded_runs import oracle_for
from hwnas.search.services.rounds import RoundState
from hwnas.search.services.target_args import import_hint
from hwnas.search.storage import (
    GRACE_S,
    HEARTBEAT_S,
    StopAtComplete,
    fail_stale,
    optuna_storage,
)
from hwnas.supernet.batch_accuracy import AccuracyOracle
from hwnas.supernet.space import SearchSpace


@dataclass(frozen=True)
class SearchSpec:
    """A search as its workers see it: where, what, how, and the round they work in."""

    db_url: str
    name: str
    run: str
    space: SearchSpace  # the run's
    problem: Problem
    config: SearchConfig
    round: RoundState | None = None  # None: before round 0 is begun
    oracle: str | None = None  # the accuracy oracle's inputs (a supernet-driven search)

    def with_oracle(self, path: str | None) -> SearchSpec:
        return dataclasses.replace(self, oracle=path)

    @property
    def study_name(self) -> str:
        return self.round.study if self.round is not None else self.name

    @property
    def round_no(self) -> int:
        return self.round.round if self.round is not None else 0

    @property
    def trials(self) -> int:
        """The finished trials at which the round ends."""
        return self.round.trials if self.round is not None else self.config.trials

    @property
    def accuracy_predictor(self) -> int | None:
        """The accuracy predictor scoring the round's trials (row id); None: the supernet."""
        return self.round.accuracy_predictor if self.round is not None else None

    def settings(self) -> dict[str, Any]:
        """The study's `hwnas` attribute (what optuna-dashboard users see)."""
        return {
            "run": self.run,
            "targets": list(self.problem.targets),
            "budgets": dict(self.problem.budgets),
            "margins": dict(self.problem.margins),
            "objectives": ["accuracy", *self.problem.targets, *self.problem.extras],
            "sampler": self.config.sampler,
            "seed": self.config.seed,
            "initial": self.config.initial,
        }


@dataclass(frozen=True)
class LatencyModel:
    """A target's latency predictor, its stored figures and its row id."""

    predictor: Predictor
    metrics: Mapping[str, Any]
    id: int


def load_predictor_rows(
    db: Database, space: SearchSpace, problem: Problem, run_name: str,
    ids: Mapping[str, int] = {},
) -> dict[str, LatencyModel]:  # fmt: skip
    """target -> its latency model: the row `ids` names, else the newest; checked to be of
    `space`."""
    out = {}
    for key in problem.targets:
        p, scores, pid = None, None, ids.get(key)
        try:
            pid = pid or newest_predictor_id(db, Target.parse(key), space_key=space.key)
            p, scores = load_predictor_by_id(db, pid) if pid else (None, None)
        except UserError:
            p = None
        predictor = _checked(key, p, space, run_name)
        assert pid is not None  # the row `predictor` was read from
        out[key] = LatencyModel(predictor, scores or {}, pid)
    return out


def _checked(key: str, p: Predictor | None, space: SearchSpace, run_name: str) -> Predictor:
    """Target `key`'s latency predictor `p`, which must be there and be of `space`."""
    how = (
        f"measure it (`hwnas measure --run {run_name} --target {key} --n 100 --blocks`) and "
        f"fit one (`hwnas predictor fit --target {key} --run {run_name}`); a space measured "
        f"without a run serves too (`hwnas measure --space SPACE --target {key}`)"
    )
    if not Target.parse(key).measurable:
        how = (
            f"{key} is not cpu, gpu or tflite: import its measurements "
            f"({import_hint(key, space.name)}) and fit one (`hwnas predictor fit --target {key} "
            f"--run {run_name}`)"
        )
    if p is None:
        raise UserError(f"no latency predictor for target {key}; {how}")
    if p.space.to_dict() != space.to_dict():
        raise UserError(f"the {key} predictor was fitted on another search space; {how}")
    return p


def build_evaluator(run: Any, predictors: Mapping[str, Predictor]) -> TrialEvaluator:
    """The trial evaluator of a finished run: the supernet's accuracy (compiled for every
    resolution, `recorded_runs.oracle_for`) and the latency predictors."""
    return TrialEvaluator(SearchSpace.from_dict(run.space), oracle_for(run), predictors)


def round_evaluator(spec: SearchSpec, rows: store.RoundRows) -> TrialEvaluator:
    """The trial evaluator of a round, from the rows it names (`search_store.round_rows`):
    its latency predictors, and its accuracy predictor or else the supernet's accuracy (the
    oracle whose inputs the parent wrote to `spec.oracle`)."""
    predictors = {
        k: _checked(k, _latency_predictor(model), spec.space, spec.run)
        for k, model in rows.predictors.items()
    }
    if spec.accuracy_predictor is not None:
        acc = _accuracy_predictor(spec, rows.accuracy)
        return TrialEvaluator(spec.space, acc, predictors, supernet=False)
    assert spec.oracle is not None, "a supernet-driven round's parent writes the oracle's inputs"
    return TrialEvaluator(spec.space, _read_oracle(spec.space, spec.oracle), predictors)


@functools.lru_cache(maxsize=1)
def _read_oracle(space: SearchSpace, path: str) -> AccuracyOracle:
    """The oracle of `path`, once per process (one worker in the parent runs every round)."""
    return AccuracyOracle.read(space, path)


def _accuracy_predictor(spec: SearchSpec, row: Mapping[str, Any] | None) -> AccuracyPredictor:
    pid, how = spec.accuracy_predictor, f"fit one with `hwnas accuracy fit --run {spec.run}`"
    if row is None:
        raise UserError(f"no accuracy predictor {pid} for run {spec.run!r}; {how}")
    try:
        return AccuracyPredictor.of_space(spec.space, dict(row))
    except AccuracyPredictorError as e:
        raise UserError(f"accuracy predictor {pid}: {e}; {how}") from None


def _latency_predictor(model: Mapping[str, Any] | None) -> Predictor | None:
    try:
        return None if model is None else Predictor.from_dict(dict(model))
    except PredictorError:
        return None


class WorkerContext:
    """What one worker process needs: the round's evaluator and the search's row id, from
    the rows the round names (read once)."""

    def __init__(self, spec: SearchSpec) -> None:
        assert spec.round is not None, "workers run the trials of a begun round"
        self.db = open_db(spec.db_url, create=False)
        ids = dict(spec.round.predictors)
        rows = store.round_rows(self.db, spec.name, ids, spec.accuracy_predictor)
        self.search_id = rows.search_id
        self.evaluate = round_evaluator(spec, rows)


def run_worker(spec: SearchSpec, index: int, progress: bool) -> None:
    """Run trials until the study has `spec.trials` finished ones (module-level: picklable)."""
    ctx = WorkerContext(spec)
    try:
        study = _load_study(spec, index)
        remaining = spec.trials - len(complete(study))
        if remaining <= 0:
            return
        after: list[Any] = [
            StopAtComplete(spec.trials),
            candidates.Recorder(ctx.db, ctx.search_id, spec.problem, spec.round_no),
        ]
        bar = _Bar(study, spec, enabled=progress)
        if progress:
            after.append(bar)
        objective = make_objective(spec.space, spec.problem, ctx.evaluate, spec.round_no)
        study.optimize(objective, n_trials=remaining, callbacks=[_Each(after)])
        bar.close()
    finally:
        ctx.db.dispose()


def _load_study(spec: SearchSpec, index: int) -> optuna.Study:
    seed = None if spec.config.seed is None else spec.config.seed + index
    return optuna.load_study(
        study_name=spec.study_name,
        storage=optuna_storage(spec.db_url),
        sampler=make_sampler(spec.config.sampler, seed),
    )


def complete(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


class _Each:
    """Optuna callback: every callback of `after`, in order, with one copy of the trial
    (Optuna deep-copies the finished trial for each callback it is given: a trial of 46
    parameters takes about 1.4 ms, a tenth of a trial's time here). None changes it."""

    def __init__(self, after: list[Any]) -> None:
        self.after = after

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        for callback in self.after:
            callback(study, trial)


class _Bar:
    """Progress: finished trials, the best feasible accuracy and the Pareto front's size."""

    def __init__(self, study: optuna.Study, spec: SearchSpec, enabled: bool = True) -> None:
        self.problem = spec.problem
        self.points: list[list[float]] = []
        self.feasible: list[bool] = []
        for t in candidates.finished(study.get_trials(deepcopy=False)):
            self._add(t.user_attrs["candidate"])
        self.bar = tqdm(
            total=spec.trials, initial=len(self.points), desc="search", unit="trial",
            disable=not enabled,
        )  # fmt: skip

    def _add(self, cand: Mapping[str, Any]) -> None:
        v = self.problem.values(cand)
        self.points.append([-v[0], *v[1:]])
        self.feasible.append(self.problem.feasible(cand["latency_ms"]))

    def update_to(self, trials: list[FrozenTrial]) -> None:
        self.points, self.feasible = [], []
        for t in candidates.finished(trials):
            self._add(t.user_attrs["candidate"])
        self._show()

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state == TrialState.COMPLETE and "candidate" in trial.user_attrs:
            self._add(trial.user_attrs["candidate"])
        self._show()

    def _show(self) -> None:
        pts, ok = np.asarray(self.points), np.asarray(self.feasible, bool)
        best = float(-pts[ok, 0].min()) if ok.any() else None
        front = int(pareto_mask(pts, ok).sum()) if len(pts) else 0
        self.bar.n = len(self.points)
        self.bar.set_postfix(best_acc="-" if best is None else f"{best:.4f}", pareto=front)

    def close(self) -> None:
        self.bar.close()


def run_pool(spec: SearchSpec, workers: int, progress: bool, study: optuna.Study) -> None:
    """`workers` local processes on the same study; the parent shows progress."""
    mp = multiprocessing.get_context("spawn")
    procs = [mp.Process(target=run_worker, args=(spec, i, False)) for i in range(workers)]
    for p in procs:
        p.start()
    bar = _Bar(study, spec, enabled=progress)
    while any(p.is_alive() for p in procs):
        time.sleep(1.0)
        if progress:
            bar.update_to(study.get_trials(deepcopy=False))
    bar.close()
    bad = [p.exitcode for p in procs if p.exitcode != 0]
    if bad:
        raise RuntimeError(f"{len(bad)} of {workers} search workers failed (exit codes {bad})")


def settle_stale(study: optuna.Study) -> bool:
    """Fail trials left RUNNING by a dead worker (after the heartbeat grace period) so that
    their retries run; True when retries are waiting."""
    if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        return False
    time.sleep(GRACE_S + HEARTBEAT_S)  # a live worker elsewhere beats meanwhile
    fail_stale(study)
    return bool(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))


def run_round_trials(spec: SearchSpec) -> list[FrozenTrial]:
    """Run the round's study up to `spec.trials` finished trials; returns the new ones."""
    study = _create_study(spec)
    if spec.round_no == 0:
        c = spec.config
        enqueue_initial(study, spec.space, c.sampler, min(c.initial, spec.trials), c.seed)
    before = {t.number for t in complete(study)}
    if len(before) < spec.trials:
        _run_workers(spec, study)
        if settle_stale(study) and len(complete(study)) < spec.trials:
            _run_workers(spec, study)
    return [t for t in complete(study) if t.number not in before]


def _create_study(spec: SearchSpec) -> optuna.Study:
    study = optuna.create_study(
        study_name=spec.study_name,
        storage=optuna_storage(spec.db_url),
        directions=spec.problem.directions,
        load_if_exists=True,
    )
    # describes the study to optuna-dashboard users; another machine may set it meanwhile
    if spec.round_no == 0:
        with contextlib.suppress(IntegrityError, optuna.exceptions.StorageInternalError):
            study.set_user_attr("hwnas", spec.settings())
    return study


def _run_workers(spec: SearchSpec, study: optuna.Study) -> None:
    progress = not spec.config.quiet
    if spec.config.workers == 1:
        run_worker(spec, 0, progress)
    else:
        run_pool(spec, spec.config.workers, progress, study)
