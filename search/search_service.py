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
import multiprocessing
import time
import warnings
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from tqdm import tqdm

from db.models import Candidate, Run, Search
from db.session import Database, open_db
from latency.predictor import Predictor
from latency.targets import Target, TargetError
from search import candidates
from search.initial_design import N_INITIAL, enqueue_initial
from search.objective import EXTRAS, Problem, TrialEvaluator, make_objective
from search.output import UserError
from search.pareto import pareto_mask
from search.predictor_service import load_predictor_row
from search.samplers import SAMPLERS, make_sampler
from search.storage import GRACE_S, HEARTBEAT_S, optuna_storage
from search.train_service import enable_compile_cache, load_run, run_dataset
from supernet.space import SearchSpace

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
    return {k: p for k, (p, _) in _load_predictor_rows(db, space, problem, run_name).items()}


def _load_predictor_rows(db, space: SearchSpace, problem: Problem, run_name: str) -> dict:
    out = {}
    for key in problem.targets:
        how = (
            f"measure it (`hwnas measure --run {run_name} --target {key} --n 100 --blocks`) and "
            f"fit one (`hwnas predictor fit --target {key}`)"
        )
        try:
            p, scores = load_predictor_row(db, Target.parse(key))
        except UserError:
            raise UserError(f"no latency predictor for target {key}; {how}") from None
        if p.space.to_dict() != space.to_dict():
            raise UserError(f"the {key} predictor was fitted on another search space; {how}")
        out[key] = (p, scores)
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
                targets=s_["objectives"][1:],
                budgets=s_["budgets"],
                sampler=spec.sampler,
                seed=spec.seed,
                status="running",
            )
            s.add(row)
            s.flush()
            return row.id
        old = {
            "run_id": row.run_id,
            "objectives": row.targets,
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
    """Accuracy oracle (compiled for every resolution) and predictors of a finished run."""
    from supernet.accuracy import AccuracyOracle
    from supernet.train import TrainConfig
    from supernet.trainer import load_variables

    enable_compile_cache()
    space = SearchSpace.from_dict(run.space)
    config = TrainConfig.from_dict({k: v for k, v in run.config.items() if k != "checkpoint"})
    data = run_dataset(run)
    oracle = AccuracyOracle(space, load_variables(space, run.config["checkpoint"]), data, config)
    oracle.warm_up()
    return TrialEvaluator(space, oracle, predictors)


class WorkerContext:
    """What one worker process needs: the evaluator and the search's row."""

    def __init__(self, spec: SearchSpec) -> None:
        self.db = open_db(spec.db_url, create=False)
        run = load_run(self.db, spec.run)
        space = SearchSpace.from_dict(run.space)
        predictors = load_predictors(self.db, space, spec.problem, spec.run)
        self.evaluate = build_evaluator(run, predictors)
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
            candidates.Recorder(ctx.db, ctx.search_id, spec.problem),
        ]
        bar = _Bar(study, spec, enabled=progress)
        if progress:
            callbacks.append(bar)
        objective = make_objective(ctx.space, spec.problem, ctx.evaluate)
        study.optimize(objective, n_trials=remaining, callbacks=callbacks)
        bar.close()
    finally:
        ctx.db.dispose()


def _load_study(spec: SearchSpec, index: int) -> optuna.Study:
    constraints = spec.problem.constraints if spec.problem.budgets else None
    seed = None if spec.seed is None else spec.seed + index
    return optuna.load_study(
        study_name=spec.name,
        storage=optuna_storage(spec.db_url),
        sampler=make_sampler(spec.sampler, seed, constraints),
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
    optuna.storages.fail_stale_trials(study)
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
) -> dict:
    _check_args(trials, sampler, workers, initial)
    problem = parse_problem(list(targets), list(budgets), list(extras))
    db = open_db(db_url, create=False)
    try:
        run = load_run(db, run_name)
        space = SearchSpace.from_dict(run.space)
        rows = _load_predictor_rows(db, space, problem, run_name)
        problem = dataclasses.replace(problem, margins=margins_for(problem, rows, margin))
        predictors = {k: p for k, (p, _) in rows.items()}
        check_budgets(space, problem, predictors)
        spec = SearchSpec(db.url, name or f"{run_name}-search", run_name, problem, trials,
                          sampler, seed, initial)  # fmt: skip
        search_id = open_search(db, spec, run)
    finally:
        db.dispose()
    study = _create_study(spec)
    enqueue_initial(study, space, spec.sampler, min(spec.initial, trials), spec.seed)
    before, t0 = {t.number for t in _complete(study)}, time.perf_counter()
    _run_workers(spec, workers, progress, study)
    if settle_stale(study) and len(_complete(study)) < trials:
        _run_workers(spec, workers, progress, study)
    wall = time.perf_counter() - t0
    new = [t for t in _complete(study) if t.number not in before]
    result = finish(spec, study, search_id, measure)
    return result | {"margins": dict(problem.margins), "seconds": wall} | rate(new)


def _complete(study: optuna.Study) -> list:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def rate(new: list) -> dict:
    """Trials per second while trials ran (from the first start to the last finish of this
    invocation's trials: the workers' start-up and compiles are not counted)."""
    if not new:
        return {"new_trials": 0, "trials_per_s": None}
    span = max(t.datetime_complete for t in new) - min(t.datetime_start for t in new)
    return {"new_trials": len(new), "trials_per_s": len(new) / max(span.total_seconds(), 1e-9)}


def _create_study(spec: SearchSpec) -> optuna.Study:
    study = optuna.create_study(
        study_name=spec.name,
        storage=optuna_storage(spec.db_url),
        directions=spec.problem.directions,
        load_if_exists=True,
    )
    # describes the study to optuna-dashboard users; another machine may set it meanwhile
    with contextlib.suppress(IntegrityError, optuna.exceptions.StorageInternalError):
        study.set_user_attr("hwnas", spec.settings())
    return study


def _run_workers(spec: SearchSpec, workers: int, progress: bool, study: optuna.Study) -> None:
    if workers == 1:
        run_worker(spec, 0, progress)
    else:
        run_pool(spec, workers, progress, study)


def finish(spec: SearchSpec, study: optuna.Study, search_id: int, measure: bool) -> dict:
    """Sync the candidates, mark the front, measure it here, and report."""
    db = open_db(spec.db_url, create=False)
    try:
        candidates.sync(db, search_id, study.get_trials(deepcopy=False), spec.problem)
        candidates.mark_pareto(db, search_id, spec.problem)
        check = None
        if measure:
            from search.remeasure import remeasure_front

            check = remeasure_front(db, search_id, spec)
        with db.write() as s:
            s.get(Search, search_id).status = "finished"
        return report(db, spec.name) | {"budget_check": check}
    finally:
        db.dispose()


def find_search(s, name: str) -> Search:
    row = s.scalars(select(Search).where(Search.name == name)).one_or_none()
    if row is None:
        names = s.scalars(select(Search.name).order_by(Search.id)).all()
        known = f"; searches here: {', '.join(names)}" if names else ""
        raise UserError(f"no search named {name!r} in this database{known}")
    return row


def report(db: Database, name: str) -> dict:
    with db.read() as s:
        row = find_search(s, name)
        rows = s.scalars(
            select(Candidate).where(Candidate.search_id == row.id).order_by(Candidate.trial_number)
        ).all()
        front = sorted((r for r in rows if r.pareto), key=lambda r: -r.accuracy)
        return {
            "search": row.name,
            "study": row.study_name,
            "trials": len(rows),
            "feasible": sum(r.feasible for r in rows),
            "budgets": row.budgets,
            "pareto": [_front_entry(r) for r in front],
        }


def _front_entry(r: Candidate) -> dict:
    out = {
        "candidate": r.id,
        "trial": r.trial_number,
        "subnet": r.subnet,
        "key": r.subnet_key,
        "accuracy": r.accuracy,
        "latency_ms": r.predicted_ms,
        "params": r.params,
        "macs": r.macs,
    }
    if r.measured_ms:
        out["measured_ms"] = r.measured_ms
    return out


def pareto(db_url: str | None, name: str) -> dict:
    """`hwnas pareto SEARCH`: the front (synced with the study first)."""
    db = open_db(db_url, create=False)
    try:
        with db.read() as s:
            row = find_search(s, name)
            search_id, objectives, budgets = row.id, row.targets, row.budgets
        study = optuna.load_study(study_name=name, storage=optuna_storage(db.url))
        margins = study.user_attrs.get("hwnas", {}).get("margins", {})
        problem = _problem_of(objectives, budgets, margins)
        if candidates.sync(db, search_id, study.get_trials(deepcopy=False), problem):
            candidates.mark_pareto(db, search_id, problem)
        return report(db, name)
    finally:
        db.dispose()


def _problem_of(objectives: list[str], budgets: dict, margins: dict) -> Problem:
    targets = tuple(o for o in objectives if o not in EXTRAS)
    extras = tuple(o for o in objectives if o in EXTRAS)
    return Problem(targets, tuple(budgets.items()), extras, tuple(margins.items()))
