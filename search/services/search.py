"""`hwnas search` and `hwnas pareto`: a multi-objective Optuna study over a trained supernet.

Accuracy comes from the supernet's weights (BN recalibrated, validation split), latency from
each target's fitted predictor; budgets are hard constraints. The study is stored through
Optuna's RDB storage in the hwnas database, so running the same `--name` again continues it,
`--workers K` runs K local processes, and the same command on other machines with a shared
PostgreSQL `--db` joins it. When the workers are done the candidates are synced, the Pareto
front marked, and its subnets measured for real on every target of this machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from hwnas.db.models import Candidate, Run, Search
from hwnas.db.session import Database, open_db
from hwnas.latency.predictor import Predictor
from hwnas.latency.targets import Target, TargetError
from hwnas.search import candidates
from hwnas.search.initial_design import enqueue_initial
from hwnas.search.objective import EXTRAS, Problem, TrialEvaluator, make_objective
from hwnas.search.output import UserError
from hwnas.search.pareto import pareto_mask
from hwnas.search.samplers import SAMPLERS, make_sampler
from hwnas.search.search_config import DEFAULT_ROUNDS, N_INITIAL
from hwnas.search.services import accuracy_fit as accuracy_service
from hwnas.search.services import rounds as rounds_
from hwnas.search.services.prediction import load_predictor_by_id, newest_predictor_id
from hwnas.search.services.recorded_runs import load_run, oracle_for
from hwnas.search.storage import GRACE_S, HEARTBEAT_S, fail_stale, optuna_storage
from hwnas.supernet.space import SearchSpace
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from tqdm import tqdm

logger = logging.getLogger(__name__)

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@dataclass(frozen=True)
class SearchSpec:
    db_url: str
    name: str
    run: str
    problem: Problem
    trials: int
    sampler: str
    seed: int | None
    initial: int = N_INITIAL
    # how the search was asked for, as `hwnas search` takes it (stored with the search)
    options: Mapping[str, Any] = field(default_factory=dict)
    # the closed loop's current round (`rounds.py`): its study and scoring predictors
    round: int = 0
    study: str = ""
    predictors: tuple[tuple[str, int], ...] = ()
    # the accuracy predictor scoring the round's trials (row id); None: the supernet
    accuracy_predictor: int | None = None

    @property
    def study_name(self) -> str:
        return self.study or self.name

    def settings(self) -> dict:
        return {
            "run": self.run,
            "targets": list(self.problem.targets),
            "budgets": dict(self.problem.budgets),
            "margins": dict(self.problem.margins),
            "objectives": ["accuracy", *self.problem.targets, *self.problem.extras],
            "sampler": self.sampler,
            "seed": self.seed,
            "initial": self.initial,
        }


def parse_problem(targets: list[str], budgets: list[str], extras: list[str]) -> Problem:
    if not targets:
        raise UserError("give at least one --target (e.g. --target tflite)")
    keys = []
    for text in targets:
        try:
            keys.append(Target.parse(text).key)
        except TargetError as e:
            raise UserError(str(e)) from None
    if len(set(keys)) != len(keys):
        raise UserError(f"--target repeats a target: {', '.join(keys)}")
    return Problem(tuple(keys), _parse_budgets(budgets, keys), _parse_extras(extras))


def _parse_budgets(texts: list[str], keys: list[str]) -> tuple[tuple[str, float], ...]:
    out = {}
    for text in texts:
        name, sep, value = text.partition("=")
        try:
            key = Target.parse(name).key
            ms = float(value)
        except (TargetError, ValueError):
            raise UserError(
                f"--budget {text!r}: use TARGET=MS, e.g. --budget tflite=2.5"
            ) from None
        if not sep or not ms > 0:
            raise UserError(f"--budget {text!r}: use TARGET=MS with MS > 0")
        if key not in keys:
            raise UserError(f"--budget {text!r}: {key} is not a --target of this search")
        out[key] = ms
    return tuple(out.items())


def _parse_extras(extras: list[str]) -> tuple[str, ...]:
    for x in extras:
        if x not in EXTRAS:
            raise UserError(f"unknown --objective {x!r}; choose {' or '.join(EXTRAS)}")
    return tuple(dict.fromkeys(extras))


def _check_args(trials: int, sampler: str, workers: int, initial: int) -> None:
    if trials < 1:
        raise UserError(f"--trials must be at least 1, got {trials}")
    if initial < 0:
        raise UserError(f"--initial must be 0 or more, got {initial}")
    if sampler not in SAMPLERS:
        raise UserError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if not 1 <= workers <= 64:
        raise UserError(f"--workers must be between 1 and 64, got {workers}")


# ---- checks before anything is written --------------------------------------------------------


def load_predictors(
    db: Database, space: SearchSpace, problem: Problem, run_name: str
) -> dict[str, Predictor]:
    """The newest predictor of every target of `problem`, checked against `space`."""
    return {k: p for k, (p, _, _) in _load_predictor_rows(db, space, problem, run_name).items()}


def _load_predictor_rows(
    db, space: SearchSpace, problem: Problem, run_name: str, ids: Mapping[str, int] = {}
) -> dict:
    """target -> (predictor, metrics, row id): the rows `ids` names, else the newest."""
    out = {}
    for key in problem.targets:
        how = (
            f"measure it (`hwnas measure --run {run_name} --target {key} --n 100 --blocks`) and "
            f"fit one (`hwnas predictor fit --target {key} --run {run_name}`); a space measured "
            f"without a run serves too (`hwnas measure --space SPACE --target {key}`)"
        )
        try:
            pid = ids.get(key) or newest_predictor_id(db, Target.parse(key), space_key=space.key)
            p, scores = load_predictor_by_id(db, pid) if pid else (None, None)
        except UserError:
            p = None
        if p is None:
            raise UserError(f"no latency predictor for target {key}; {how}")
        if p.space.to_dict() != space.to_dict():
            raise UserError(f"the {key} predictor was fitted on another search space; {how}")
        out[key] = (p, scores, pid)
    return out


def margins_for(problem: Problem, rows: dict, margin: str) -> tuple[tuple[str, float], ...]:
    """Safety margin per budgeted target: `auto` takes the predictor's held-out `under_p95`
    (how far 95% of measurements stay below prediction x (1 + margin)), else a number."""
    if margin != "auto":
        try:
            m = float(margin)
        except ValueError:
            m = -1.0
        if not 0 <= m < 1:
            raise UserError(f"--margin {margin!r}: use auto or a number in [0, 1), e.g. 0.03")
        return tuple((t, m) for t, _ in problem.budgets)
    out = []
    for t, _ in problem.budgets:
        v = rows[t][1].get("under_p95", 0.0)
        out.append((t, float(min(max(v, 0.0), MAX_AUTO_MARGIN)) if v == v else 0.0))
    return tuple(out)


MAX_AUTO_MARGIN = 0.25


def fastest(space: SearchSpace, predictor: Predictor, n: int = 20_000, seed: int = 0):
    """The fastest subnet the predictor knows of: the smallest and `n` random ones."""
    rng = np.random.default_rng(seed)
    subnets = [space.smallest(), *(space.sample(rng) for _ in range(n))]
    ms = predictor.predict(subnets)
    i = int(np.argmin(ms))
    return float(ms[i]), subnets[i]


def check_budgets(space: SearchSpace, problem: Problem, predictors: dict) -> None:
    margins = dict(problem.margins)
    for key, budget in problem.budgets:
        ms, subnet = fastest(space, predictors[key])
        m = margins.get(key, 0.0)
        if ms * (1 + m) > budget:
            with_margin = f" (with the {m:.1%} safety margin, {ms * (1 + m):.4g} ms)" if m else ""
            raise UserError(
                f"no subnet meets the budget {key} <= {budget:g} ms: the fastest is predicted "
                f"at {ms:.4g} ms{with_margin} ({subnet.key}); raise the budget"
            )


def open_search(db: Database, spec: SearchSpec, run: Run) -> int:
    """The Search row of `spec.name`: created, or checked to have the same settings (another
    machine may create it at the same moment: then it is read back)."""
    try:
        return _open_search(db, spec, run)
    except IntegrityError:
        return _open_search(db, spec, run)


def _open_search(db: Database, spec: SearchSpec, run: Run) -> int:
    s_ = spec.settings()
    with db.write() as s:
        row = s.scalars(select(Search).where(Search.name == spec.name)).one_or_none()
        if row is None:
            row = Search(
                name=spec.name,
                run_id=run.id,
                study_name=spec.name,
                targets=s_["targets"],
                objectives=list(spec.problem.extras),
                budgets=s_["budgets"],
                options=dict(spec.options),
                sampler=spec.sampler,
                seed=spec.seed,
                status="running",
            )
            s.add(row)
            s.flush()
            return row.id
        old = {
            "run_id": row.run_id,
            "objectives": [*row.targets, *row.objectives],
            "budgets": row.budgets,
            "sampler": row.sampler,
        }
        new = {
            "run_id": run.id,
            "objectives": s_["objectives"][1:],
            "budgets": s_["budgets"],
            "sampler": spec.sampler,
        }
        if old != new:
            raise UserError(
                f"search {spec.name!r} exists with other settings ({_differs(old, new)}); "
                "continue it with the same arguments or choose another --name"
            )
        row.status = "running"
        return row.id


def _differs(old: dict, new: dict) -> str:
    return ", ".join(f"{k}: {old[k]} vs {new[k]}" for k in old if old[k] != new[k])


# ---- the workers ------------------------------------------------------------------------------


def build_evaluator(run: Run, predictors: dict[str, Predictor]) -> TrialEvaluator:
    """The trial evaluator of a finished run: the supernet's accuracy (compiled for every
    resolution, `runs.oracle_for`) and the latency predictors."""
    return TrialEvaluator(SearchSpace.from_dict(run.space), oracle_for(run), predictors)


class WorkerContext:
    """What one worker process needs: the evaluator and the search's row."""

    def __init__(self, spec: SearchSpec) -> None:
        self.db = open_db(spec.db_url, create=False)
        run = load_run(self.db, spec.run)
        space = SearchSpace.from_dict(run.space)
        rows = _load_predictor_rows(self.db, space, spec.problem, spec.run, dict(spec.predictors))
        predictors = {k: p for k, (p, _, _) in rows.items()}
        if spec.accuracy_predictor is None:
            self.evaluate = build_evaluator(run, predictors)
        else:
            acc = accuracy_service.load(self.db, run, spec.accuracy_predictor).predictor
            self.evaluate = TrialEvaluator(space, acc, predictors, supernet=False)
        self.space = self.evaluate.space
        with self.db.read() as s:
            self.search_id = s.scalar(select(Search.id).where(Search.name == spec.name))


def run_worker(spec: SearchSpec, index: int, progress: bool) -> None:
    """Run trials until the study has `spec.trials` finished ones (module-level: picklable)."""
    ctx = WorkerContext(spec)
    try:
        study = _load_study(spec, index)
        remaining = spec.trials - _n_complete(study)
        if remaining <= 0:
            return
        callbacks = [
            MaxTrialsCallback(spec.trials, states=(TrialState.COMPLETE,)),
            candidates.Recorder(ctx.db, ctx.search_id, spec.problem, spec.round),
        ]
        bar = _Bar(study, spec, enabled=progress)
        if progress:
            callbacks.append(bar)
        objective = make_objective(ctx.space, spec.problem, ctx.evaluate, spec.round)
        study.optimize(objective, n_trials=remaining, callbacks=callbacks)
        bar.close()
    finally:
        ctx.db.dispose()


def _load_study(spec: SearchSpec, index: int) -> optuna.Study:
    seed = None if spec.seed is None else spec.seed + index
    return optuna.load_study(
        study_name=spec.study_name,
        storage=optuna_storage(spec.db_url),
        sampler=make_sampler(spec.sampler, seed),
    )


def _n_complete(study: optuna.Study) -> int:
    return len(_complete(study))


class _Bar:
    """Progress: finished trials, the best feasible accuracy and the Pareto front's size."""

    def __init__(self, study: optuna.Study, spec: SearchSpec, enabled: bool = True) -> None:
        self.spec = spec
        self.points: list[list[float]] = []
        self.feasible: list[bool] = []
        for t in candidates.finished(study.get_trials(deepcopy=False)):
            self._add(t.user_attrs["candidate"])
        self.bar = tqdm(
            total=spec.trials, initial=len(self.points), desc="search", unit="trial",
            disable=not enabled,
        )  # fmt: skip

    def _add(self, cand: dict) -> None:
        v = self.spec.problem.values(cand)
        self.points.append([-v[0], *v[1:]])
        self.feasible.append(self.spec.problem.feasible(cand["latency_ms"]))

    def update_to(self, trials: list) -> None:
        self.points, self.feasible = [], []
        for t in candidates.finished(trials):
            self._add(t.user_attrs["candidate"])
        self._show()

    def __call__(self, study: optuna.Study, trial) -> None:
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


# ---- the command ------------------------------------------------------------------------------


def search(
    db_url: str | None,
    run_name: str,
    targets: list[str],
    budgets: list[str] = (),
    trials: int = 100,
    sampler: str = "tpe",
    workers: int = 1,
    name: str | None = None,
    seed: int | None = None,
    extras: list[str] = (),
    measure: bool = True,
    progress: bool = True,
    margin: str = "auto",
    initial: int = N_INITIAL,
    rounds: int = DEFAULT_ROUNDS,
    round_trials: int | None = None,
    protocols: Mapping = {},
    accuracy: str = "auto",
    accuracy_predictor: int | None = None,
) -> dict:
    """Run (or continue) a search: `trials` trials, the front measured, then up to `rounds`
    more rounds of `round_trials` trials each with refitted predictors until the measured
    front agrees with its predictions and, driven by an accuracy predictor, its front
    re-scored with the supernet settles (`rounds.py`); `measure=False` measures
    nothing, and runs one round unless an accuracy predictor drives the search.
    `protocols`: target key -> the measurement protocol of its fronts (default: standard).
    `accuracy`: what scores a trial's accuracy (`accuracy.MODES`); `accuracy_predictor` picks
    the accuracy predictor (default: the run's newest)."""
    _check_args(trials, sampler, workers, initial)
    accuracy_service.check_mode(accuracy)
    _check_rounds(rounds, round_trials)
    step = round_trials or default_round_trials(trials)
    options = {"margin": margin, "initial": initial, "rounds": rounds,
               "round_trials": round_trials, "measure": measure, "accuracy": accuracy}  # fmt: skip
    base = SearchSpec(db_url or "", name or f"{run_name}-search", run_name, Problem(()),
                      trials, sampler, seed, initial, options)  # fmt: skip
    spec, search_id, state = _prepare(db_url, run_name, (targets, budgets, extras), margin,
                                      base, step, (accuracy, accuracy_predictor))  # fmt: skip
    new, t0 = [], time.perf_counter()
    while True:
        spec_r = dataclasses.replace(spec, round=state.round, study=state.study,
                                     predictors=state.predictors, trials=state.trials,
                                     accuracy_predictor=state.accuracy_predictor)  # fmt: skip
        new.append(_run_round_trials(spec_r, workers, progress))
        if not measure and spec_r.accuracy_predictor is None:
            break
        plan = (rounds, step, measure)
        state, done = _end_round(spec_r, search_id, state, plan, protocols)
        if done:
            break
    wall = time.perf_counter() - t0
    result = finish(spec_r, search_id, measure)
    return result | {"margins": dict(spec.problem.margins), "seconds": wall} | rate(new)


def default_round_trials(trials: int) -> int:
    """Trials per later round: a third of the first round's, at least 10."""
    return max(10, trials // 3)


def _check_rounds(rounds: int, round_trials: int | None) -> None:
    if not 0 <= rounds <= 20:
        raise UserError(f"--rounds must be between 0 and 20, got {rounds}")
    if round_trials is not None and round_trials < 1:
        raise UserError(f"--round-trials must be at least 1, got {round_trials}")


def _prepare(db_url, run_name, problem_args, margin, spec: SearchSpec, step: int, acc):
    """Check everything, then create or find the search and the round to work in."""
    problem = parse_problem(*(list(a) for a in problem_args))
    with open_db(db_url, create=False) as db:
        run = load_run(db, run_name)
        space = SearchSpace.from_dict(run.space)
        first = _first_round_ids(db, spec.name)
        rows = _load_predictor_rows(db, space, problem, run_name, first)
        problem = dataclasses.replace(problem, margins=margins_for(problem, rows, margin))
        check_budgets(space, problem, {k: p for k, (p, _, _) in rows.items()})
        accuracy_id = accuracy_service.source(db, run, *acc)
        resumed = _latest_accuracy_predictor(db, spec.name)
        if resumed is not None:  # a predictor-driven search continued: still valid?
            accuracy_service.load(db, run, resumed)
        spec = dataclasses.replace(spec, db_url=db.url, problem=problem)
        search_id = open_search(db, spec, run)
        ids = {k: pid for k, (_, _, pid) in rows.items()}
        state = rounds_.begin(db, search_id, spec.name, ids, spec.trials, step, accuracy_id)
    return spec, search_id, state


def _latest_accuracy_predictor(db: Database, name: str) -> int | None:
    """The accuracy predictor of an existing search's latest round (None: the supernet)."""
    with db.read() as s:
        row = s.scalars(select(Search).where(Search.name == name)).one_or_none()
        return row.rounds[-1].accuracy_predictor if row is not None and row.rounds else None


def _first_round_ids(db: Database, name: str) -> dict[str, int]:
    """The predictors round 0 of an existing search used (its margins and budget check)."""
    with db.read() as s:
        row = s.scalars(select(Search).where(Search.name == name)).one_or_none()
        first = row.rounds[0].predictors if row is not None and row.rounds else {}
        return {k: int(v) for k, v in first.items()}


def _run_round_trials(spec: SearchSpec, workers: int, progress: bool) -> list:
    """Run the round's study up to `spec.trials` finished trials; returns the new ones."""
    study = _create_study(spec)
    if spec.round == 0:
        enqueue_initial(study, SearchSpace.from_dict(_run_space(spec)), spec.sampler,
                        min(spec.initial, spec.trials), spec.seed)  # fmt: skip
    before = {t.number for t in _complete(study)}
    if len(before) < spec.trials:
        _run_workers(spec, workers, progress, study)
        if settle_stale(study) and len(_complete(study)) < spec.trials:
            _run_workers(spec, workers, progress, study)
    return [t for t in _complete(study) if t.number not in before]


def _run_space(spec: SearchSpec) -> dict:
    with open_db(spec.db_url, create=False) as db:
        return load_run(db, spec.run).space


def _end_round(spec: SearchSpec, search_id: int, state, plan: tuple[int, int, bool], protocols):
    """Mark the round's front, re-score it with the supernet (predictor-driven) and measure
    it (`measure`); start the next round unless it agrees and is settled (`rounds_`) or the
    rounds are spent. Returns (the state to continue in, whether the loop is done)."""
    from hwnas.search.services.remeasure import front_rows, measure_candidates, remeasure_front

    (max_rounds, step, measure), agreement = plan, state.agreement
    with open_db(spec.db_url, create=False) as db:
        study = _sync_and_mark(db, spec, search_id)
        accuracy_front = _accuracy_round(db, spec, search_id, state)
        if agreement is None:
            agreement = remeasure_front(db, search_id, spec, protocols) if measure else {}
            rounds_.record(db, search_id, state.round, agreement)
        _log_round(state.round, agreement)
        agreed = rounds_.agrees(agreement) or not measure
        if (agreed and rounds_.settled(accuracy_front)) or state.round >= max_rounds:
            return state, True
        # the extrapolated subnets behind a front that disagreed, for that target's refit
        behind_too = measure and not rounds_.agrees(agreement)
        limit = min(len(front_rows(db, search_id)), rounds_.BEHIND_MAX) if behind_too else 0
        by_supernet = spec.accuracy_predictor is not None
        behind = rounds_.behind_front(db, search_id, spec.problem, limit, by_supernet)
        if behind:
            logger.info(
                f"round {state.round}: {len(behind)} extrapolated subnets behind the front"
            )
            measure_candidates(db, search_id, spec.problem.targets, behind, protocols)
        state = dataclasses.replace(state, agreement=agreement)
        return _next_round(db, spec, search_id, state, study, step), False


def _accuracy_round(db: Database, spec: SearchSpec, search_id: int, state) -> dict | None:
    """A predictor-driven round's front re-scored with the supernet and recorded (once: a
    resumed round keeps its record); None for a supernet-driven search."""
    if spec.accuracy_predictor is None:
        return None
    rescored = _supernet_front(db, spec, search_id)
    front = state.accuracy_front
    if front is None:
        front = rounds_.record_accuracy_front(db, search_id, state.round, rescored)
    logger.info(
        f"round {state.round}: front re-scored with the supernet: {front['n']} subnets, "
        f"{front['new']} new to it" + ("" if front["new"] else "; settled")
    )
    return front


def _sync_and_mark(db: Database, spec: SearchSpec, search_id: int) -> optuna.Study:
    study = optuna.load_study(study_name=spec.study_name, storage=optuna_storage(spec.db_url))
    candidates.sync(db, search_id, study.get_trials(deepcopy=False), spec.problem, spec.round)
    candidates.mark_pareto(db, search_id, spec.problem)
    return study


def _next_round(db: Database, spec: SearchSpec, search_id: int, state, study, step: int):
    r = state.round + 1
    ids = rounds_.refit(db, spec.name, search_id, state, r)
    predictors = {k: load_predictor_by_id(db, i)[0] for k, i in ids.items()}
    acc_id, acc = _refit_accuracy(db, spec, r)
    rescored = rounds_.rescore(db, search_id, predictors, r, spec.problem, acc)
    rounds_.next_study(db.url, study, rounds_.study_name(spec.name, r), spec.problem, rescored, r)
    logger.info(
        f"round {r}: predictors refitted, {len(rescored)} trials re-scored; {step} more trials"
    )
    return rounds_.start(db, search_id, state, ids, state.trials + step, acc_id)


def _refit_accuracy(db: Database, spec: SearchSpec, round_: int):
    """(row id, predictor) of the accuracy predictor refitted with the fronts re-scored so
    far, for a predictor-driven search; (None, None) for a supernet-driven one."""
    if spec.accuracy_predictor is None:
        return None, None
    run = load_run(db, spec.run)
    pid = accuracy_service.refit(db, run, f"{spec.name}/r{round_}", spec.accuracy_predictor)
    return pid, accuracy_service.load(db, run, pid).predictor


def _supernet_front(db: Database, spec: SearchSpec, search_id: int) -> int:
    """A predictor-driven search's front re-scored with the supernet (`accuracy_supernet`);
    how many subnets were evaluated."""
    if spec.accuracy_predictor is None:
        return 0
    run = load_run(db, spec.run)
    band = accuracy_service.load(db, run, spec.accuracy_predictor).band
    n = accuracy_service.rescore_front(db, search_id, run, band, spec.problem)
    if n:
        logger.info(
            f"front: {n} subnets on or within {band:.4f} of the front evaluated with the "
            f"supernet; the front is marked on their supernet accuracy"
        )
    return n


def _log_round(r: int, agreement: dict) -> None:
    for key, a in sorted(agreement.items()):
        fresh = a.get("fresh", 0)
        new = (f"; of the {fresh} measured now, {fresh * a['fresh_within10']:.0f}"
               if fresh else "; none new")  # fmt: skip
        logger.info(
            f"round {r}: front on {key}: {a['n'] * a['within10_of_predicted']:.0f} of {a['n']} "
            f"within 10% of predicted (worst {100 * a['worst_off']:.1f}% off){new}"
        )


def _complete(study: optuna.Study) -> list:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def rate(rounds: list[list]) -> dict:
    """Trials per second while trials ran: per round, from the first start to the last finish
    of this invocation's trials (the workers' start-up and compiles, and the measurements
    between rounds, are not counted)."""
    rounds = [r for r in rounds if r]
    if not rounds:
        return {"new_trials": 0, "trials_per_s": None}
    n = sum(len(r) for r in rounds)
    span = sum(
        (max(t.datetime_complete for t in r) - min(t.datetime_start for t in r)).total_seconds()
        for r in rounds
    )
    return {"new_trials": n, "trials_per_s": n / max(span, 1e-9)}


def _create_study(spec: SearchSpec) -> optuna.Study:
    study = optuna.create_study(
        study_name=spec.study_name,
        storage=optuna_storage(spec.db_url),
        directions=spec.problem.directions,
        load_if_exists=True,
    )
    # describes the study to optuna-dashboard users; another machine may set it meanwhile
    if spec.round == 0:
        with contextlib.suppress(IntegrityError, optuna.exceptions.StorageInternalError):
            study.set_user_attr("hwnas", spec.settings())
    return study


def _run_workers(spec: SearchSpec, workers: int, progress: bool, study: optuna.Study) -> None:
    if workers == 1:
        run_worker(spec, 0, progress)
    else:
        run_pool(spec, workers, progress, study)


def finish(spec: SearchSpec, search_id: int, measure: bool) -> dict:
    """Sync the candidates and mark the front (the loop has measured it), and report."""
    with open_db(spec.db_url, create=False) as db:
        _sync_and_mark(db, spec, search_id)
        _supernet_front(db, spec, search_id)
        check = None
        if measure:
            from hwnas.search.services.remeasure import budget_check, front_rows

            front = front_rows(db, search_id)
            measured = {c.id: dict(c.measured_ms or {}) for c in front}
            check = budget_check(front, measured, dict(spec.problem.budgets))
        with db.write() as s:
            s.get(Search, search_id).status = "finished"
        return summary(db, spec.name) | {"budget_check": check}


def find_search(s, name: str) -> Search:
    row = s.scalars(select(Search).where(Search.name == name)).one_or_none()
    if row is None:
        names = s.scalars(select(Search.name).order_by(Search.id)).all()
        known = f"; searches here: {', '.join(names)}" if names else ""
        raise UserError(f"no search named {name!r} in this database{known}")
    return row


def summary(db: Database, name: str) -> dict:
    """A finished search: its trials, budgets, Pareto front (most accurate first) and rounds."""
    with db.read() as s:
        row = find_search(s, name)
        rows = s.scalars(
            select(Candidate).where(Candidate.search_id == row.id).order_by(Candidate.trial_number)
        ).all()
        front = sorted((r for r in rows if r.pareto), key=_best_accuracy)
        return {
            "search": row.name,
            "study": row.study_name,
            "trials": len(rows),
            "feasible": sum(r.feasible for r in rows),
            "budgets": row.budgets,
            "pareto": [_front_entry(r) for r in front],
            "rounds": rounds_.history(db, row.id),
        }


def _best_accuracy(r: Candidate) -> float:
    """Most accurate first: by the supernet's accuracy where the candidate has one."""
    return -(r.accuracy if r.accuracy_supernet is None else r.accuracy_supernet)


def _front_entry(r: Candidate) -> dict:
    out = {
        "candidate": r.id,
        "trial": r.trial_number,
        "subnet": r.subnet,
        "key": r.subnet_key,
        "accuracy": r.accuracy,
        "accuracy_supernet": r.accuracy_supernet,
        "latency_ms": r.predicted_ms,
        "params": r.params,
        "macs": r.macs,
        "extrapolated": list(r.extrapolated),
        "round": r.round,
    }
    if r.measured_ms:
        out["measured_ms"] = r.measured_ms
    return out


def pareto(db_url: str | None, name: str) -> dict:
    """`hwnas pareto SEARCH`: the front (synced with the study first)."""
    with open_db(db_url, create=False) as db:
        with db.read() as s:
            row = find_search(s, name)
            search_id, budgets = row.id, row.budgets
            objectives = [*row.targets, *row.objectives]
            study_name, round_ = row.study_name, max(len(row.rounds) - 1, 0)
            by_supernet = bool(row.rounds) and row.rounds[-1].accuracy_predictor is not None
        study = optuna.load_study(study_name=study_name, storage=optuna_storage(db.url))
        margins = study.user_attrs.get("hwnas", {}).get("margins", {})
        problem = _problem_of(objectives, budgets, margins)
        if candidates.sync(db, search_id, study.get_trials(deepcopy=False), problem, round_):
            candidates.mark_pareto(db, search_id, problem, by_supernet)
        return summary(db, name)


def _problem_of(objectives: list[str], budgets: dict, margins: dict) -> Problem:
    targets = tuple(o for o in objectives if o not in EXTRAS)
    extras = tuple(o for o in objectives if o in EXTRAS)
    return Problem(targets, tuple(budgets.items()), extras, tuple(margins.items()))
