"""`hwnas search` and `hwnas pareto`: a multi-objective Optuna study over a trained supernet.

Accuracy comes from the supernet's weights (BN recalibrated, validation split) or the run's
accuracy predictor, latency from each target's fitted predictor; budgets are hard
constraints. The study is stored through Optuna's RDB storage in the hwnas database, so
running the same `name` again continues it, `workers` runs that many local processes
(`trial_workers`), and the same command on other machines with a shared PostgreSQL `--db`
joins it. Rounds of trials, each ended by measuring the front, make the closed loop
(`closed_loop`); when it settles the front is marked and reported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hwnas.db import search_store as store
from hwnas.db.models import Candidate, Run, Search
from hwnas.db.session import Database, open_db
from hwnas.latency.predictor import Predictor
from hwnas.latency.protocol import Protocol
from hwnas.latency.targets import Target, TargetError
from hwnas.search import candidates
from hwnas.search.objective import EXTRAS, Problem
from hwnas.search.output import UserError
from hwnas.search.result import Result
from hwnas.search.search_config import SearchConfig
from hwnas.search.services import accuracy_fit
from hwnas.search.services import closed_loop as loop_
from hwnas.search.services import rounds as rounds_
from hwnas.search.services.accuracy_fit import AccuracyChoice
from hwnas.search.services.recorded_runs import load_run, oracle_inputs
from hwnas.search.services.remeasure import Checks, budget_check, front_rows
from hwnas.search.services.trial_workers import (
    LatencyModel,
    SearchSpec,
    build_evaluator,
    load_predictor_rows,
)
from hwnas.search.storage import optuna_storage
from hwnas.supernet.space import SearchSpace, Subnet

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

__all__ = ["build_evaluator", "load_predictors", "pareto", "search", "summary"]

MAX_AUTO_MARGIN = 0.25

# ---- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrontEntry(Result):
    """A candidate on the Pareto front (`measured_ms` is left out where it was not measured)."""

    candidate: int
    trial: int
    subnet: Mapping[str, Any]
    key: str
    accuracy: float
    accuracy_supernet: float | None
    latency_ms: Mapping[str, float]  # predicted
    params: int
    macs: int
    extrapolated: tuple[str, ...]
    round: int
    measured_ms: Mapping[str, float] | None = None

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        if not self.measured_ms:
            del out["measured_ms"]
        return out


@dataclass(frozen=True)
class ParetoResult(Result):
    """`hwnas pareto`: a search's trials, budgets, front (most accurate first) and rounds."""

    search: str
    study: str
    trials: int
    feasible: int
    budgets: Mapping[str, float]
    pareto: tuple[FrontEntry, ...]
    rounds: tuple[rounds_.RoundRecord, ...]


@dataclass(frozen=True)
class SearchResult(ParetoResult):
    """`hwnas search`: the finished search, its measured front against the budgets, and how
    it ran."""

    budget_check: Checks | None  # None: nothing measured
    margins: Mapping[str, float]
    seconds: float
    new_trials: int
    trials_per_s: float | None
    accuracy_choice: AccuracyChoice


@dataclass(frozen=True)
class TrialRate:
    new_trials: int
    trials_per_s: float | None


# ---- the problem ------------------------------------------------------------------------------


def parse_problem(
    targets: Sequence[str], budgets: Sequence[str] = (), extras: Sequence[str] = ()
) -> Problem:
    """The problem as the CLI gives it: target names, `TARGET=MS` budgets, extra objectives."""
    try:
        keys = [Target.parse(text).key for text in targets]
    except TargetError as e:
        raise UserError(str(e)) from None
    return checked_problem(Problem(tuple(keys), _parse_budgets(budgets, keys), tuple(extras)))


def checked_problem(problem: Problem) -> Problem:
    """`problem` with full target keys, checked (a Python caller may name a target `tflite`)."""
    if not problem.targets:
        raise UserError("give at least one {field} (e.g. {field} tflite)", field="target")
    try:
        keys = [Target.parse(t).key for t in problem.targets]
        budgets = tuple((Target.parse(t).key, float(ms)) for t, ms in problem.budgets)
    except TargetError as e:
        raise UserError(str(e)) from None
    if len(set(keys)) != len(keys):
        raise UserError(f"{{field}} repeats a target: {', '.join(keys)}", field="target")
    for key, ms in budgets:
        if key not in keys:
            raise UserError(f"{{field}} {key}={ms:g}: {key} is not a --target of this search",
                            field="budget")  # fmt: skip
    for x in problem.extras:
        if x not in EXTRAS:
            raise UserError(f"unknown {{field}} {x!r}; choose {' or '.join(EXTRAS)}",
                            field="objective")  # fmt: skip
    extras = tuple(dict.fromkeys(problem.extras))
    return dataclasses.replace(problem, targets=tuple(keys), budgets=budgets, extras=extras)


def _parse_budgets(texts: Iterable[str], keys: list[str]) -> tuple[tuple[str, float], ...]:
    out = {}
    for text in texts:
        name, sep, value = text.partition("=")
        try:
            key = Target.parse(name).key
            ms = float(value)
        except (TargetError, ValueError):
            raise UserError(f"{{field}} {text!r}: use TARGET=MS, e.g. {{field}} tflite=2.5",
                            field="budget") from None  # fmt: skip
        if not sep or not ms > 0:
            raise UserError(f"{{field}} {text!r}: use TARGET=MS with MS > 0", field="budget")
        if key not in keys:
            raise UserError(f"{{field}} {text!r}: {key} is not a --target of this search",
                            field="budget")  # fmt: skip
        out[key] = ms
    return tuple(out.items())


# ---- checks before anything is written --------------------------------------------------------


def load_predictors(
    db: Database, space: SearchSpace, problem: Problem, run_name: str
) -> dict[str, Predictor]:
    """The newest predictor of every target of `problem`, checked against `space`."""
    return {k: m.predictor for k, m in load_predictor_rows(db, space, problem, run_name).items()}


def margins_for(
    problem: Problem, rows: Mapping[str, LatencyModel], config: SearchConfig
) -> tuple[tuple[str, float], ...]:
    """Safety margin per budgeted target: `auto` takes the predictor's held-out `under_p95`
    (how far 95% of measurements stay below prediction x (1 + margin)), else a number."""
    m = config.margin_value()
    if m is not None:
        return tuple((t, m) for t, _ in problem.budgets)
    out = []
    for t, _ in problem.budgets:
        v = rows[t].metrics.get("under_p95", 0.0)
        out.append((t, float(min(max(v, 0.0), MAX_AUTO_MARGIN)) if v == v else 0.0))
    return tuple(out)


def fastest(
    space: SearchSpace, predictor: Predictor, n: int = 20_000, seed: int = 0
) -> tuple[float, Subnet]:
    """The fastest subnet the predictor knows of: the smallest and `n` random ones."""
    rng = np.random.default_rng(seed)
    subnets = [space.smallest(), *(space.sample(rng) for _ in range(n))]
    ms = predictor.predict(subnets)
    i = int(np.argmin(ms))
    return float(ms[i]), subnets[i]


def check_budgets(
    space: SearchSpace, problem: Problem, predictors: Mapping[str, Predictor]
) -> None:
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
        row = store.search_row(s, spec.name)
        if row is None:
            row = Search(name=spec.name, run_id=run.id, study_name=spec.name,
                         targets=s_["targets"], objectives=list(spec.problem.extras),
                         budgets=s_["budgets"], options=spec.config.options(),
                         sampler=spec.config.sampler, seed=spec.config.seed,
                         status="running")  # fmt: skip
            s.add(row)
            s.flush()
            return row.id
        old = {"run_id": row.run_id, "objectives": [*row.targets, *row.objectives],
               "budgets": row.budgets, "sampler": row.sampler}  # fmt: skip
        new = {"run_id": run.id, "objectives": s_["objectives"][1:], "budgets": s_["budgets"],
               "sampler": spec.config.sampler}  # fmt: skip
        if old != new:
            raise UserError(
                f"search {spec.name!r} exists with other settings ({_differs(old, new)}); "
                "continue it with the same arguments or choose another {field}",
                field="name",
            )
        row.status = "running"
        return row.id


def _differs(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}: {old[k]} vs {new[k]}" for k in old if old[k] != new[k])


# ---- the command ------------------------------------------------------------------------------


def search(
    run: str, problem: Problem, config: SearchConfig = SearchConfig(),
    db_url: str | None = None, protocols: Mapping[str, Protocol] = {},
) -> SearchResult:  # fmt: skip
    """Run (or continue) a search of `run` for `problem`: `config.trials` trials, the front
    measured, then up to `config.rounds` more rounds of `config.step` trials each with
    refitted predictors until the measured front agrees with its predictions and, driven by
    an accuracy predictor, its front re-scored with the supernet settles (`closed_loop`);
    `config.measure=False` measures nothing, and runs one round unless an accuracy predictor
    drives the search. `protocols`: target key -> the measurement protocol of its fronts
    (default: standard)."""
    config.check()
    t0 = time.perf_counter()
    with prepared(db_url, run, checked_problem(problem), config, protocols) as (
        loop,
        state,
        choice,
    ):
        ran = loop_.run(loop, state)
    wall = time.perf_counter() - t0
    found, check = finish(ran.spec, loop.search_id)
    rate = trial_rate(ran.new_trials)
    return SearchResult(
        **{f.name: getattr(found, f.name) for f in dataclasses.fields(ParetoResult)},
        budget_check=check, margins=dict(loop.spec.problem.margins), seconds=wall,
        new_trials=rate.new_trials, trials_per_s=rate.trials_per_s, accuracy_choice=choice,
    )  # fmt: skip


def _prepare(
    db_url: str | None, run_name: str, problem: Problem, config: SearchConfig,
    protocols: Mapping[str, Protocol],
) -> tuple[loop_.Loop, rounds_.RoundState, AccuracyChoice]:  # fmt: skip
    """Check everything, then create or find the search and the round to work in."""
    name = config.name or f"{run_name}-search"
    with open_db(db_url, create=False) as db:
        run = load_run(db, run_name)
        space = SearchSpace.from_dict(run.space)
        begun = store.rounds_begun(db, name)
        rows = load_predictor_rows(db, space, problem, run_name, begun.first_predictors)
        problem = dataclasses.replace(problem, margins=margins_for(problem, rows, config))
        check_budgets(space, problem, {k: m.predictor for k, m in rows.items()})
        choice = accuracy_fit.choose(db, run, config.accuracy, config.accuracy_predictor)
        if begun.accuracy_predictor is not None:  # a predictor-driven search continued
            accuracy_fit.load(db, run, begun.accuracy_predictor)  # still valid?
        spec = SearchSpec(db.url, name, run_name, space, problem, config)
        search_id = open_search(db, spec, run)
        ids = {k: m.id for k, m in rows.items()}
        state = rounds_.begin(db, search_id, name, ids, config.trials, config.step,
                              choice.predictor)  # fmt: skip
    return loop_.Loop(spec, search_id, protocols), state, choice


@contextlib.contextmanager
def prepared(
    db_url: str | None, run_name: str, problem: Problem, config: SearchConfig,
    protocols: Mapping[str, Protocol],
) -> Iterator[tuple[loop_.Loop, rounds_.RoundState, AccuracyChoice]]:  # fmt: skip
    """The search's loop, ready to run from its round (`_prepare`). A supernet-driven search's
    workers read the supernet's accuracy oracle from one file: its inputs prepared once here
    (`recorded_runs.oracle_inputs`), in a temporary folder that lives as long as the loop."""
    loop, state, choice = _prepare(db_url, run_name, problem, config, protocols)
    if state.accuracy_predictor is not None:
        yield loop, state, choice
        return
    with open_db(db_url, create=False) as db:
        run = load_run(db, run_name)
    with tempfile.TemporaryDirectory(prefix="hwnas-oracle-") as tmp:
        oracle = str(oracle_inputs(run).write(Path(tmp) / "oracle.npz"))
        yield dataclasses.replace(loop, spec=loop.spec.with_oracle(oracle)), state, choice


def trial_rate(rounds: Sequence[Sequence[FrozenTrial]]) -> TrialRate:
    """Trials per second while trials ran: per round, from the first start to the last finish
    of this invocation's trials (the workers' start-up and compiles, and the measurements
    between rounds, are not counted)."""
    ran = [r for r in rounds if r]
    if not ran:
        return TrialRate(0, None)
    n = sum(len(r) for r in ran)
    span = sum(
        (_latest(r) - min(t.datetime_start for t in r if t.datetime_start)).total_seconds()
        for r in ran
    )
    return TrialRate(n, n / max(span, 1e-9))


def _latest(trials: Sequence[FrozenTrial]) -> Any:
    return max(t.datetime_complete for t in trials if t.datetime_complete)


def finish(spec: SearchSpec, search_id: int) -> tuple[ParetoResult, Checks | None]:
    """Sync the candidates and mark the front (the loop has measured it), and report."""
    with open_db(spec.db_url, create=False) as db:
        loop_.sync_and_mark(db, spec, search_id)
        loop_.supernet_front(db, spec, search_id)
        check = None
        if spec.config.measure:
            front = front_rows(db, search_id)
            measured = {c.id: dict(c.measured_ms or {}) for c in front}
            check = budget_check(front, measured, dict(spec.problem.budgets))
        store.set_status(db, search_id, "finished")
        return summary(db, spec.name), check


def find_search(s: Session, name: str) -> Search:
    row = store.search_row(s, name)
    if row is None:
        names = store.search_names(s)
        known = f"; searches here: {', '.join(names)}" if names else ""
        raise UserError(f"no search named {name!r} in this database{known}")
    return row


def summary(db: Database, name: str) -> ParetoResult:
    """A finished search: its trials, budgets, Pareto front (most accurate first) and rounds."""
    with db.read() as s:
        row = find_search(s, name)
        rows = store.candidates(s, row.id)
        front = sorted((r for r in rows if r.pareto), key=_best_accuracy)
        search_id, budgets = row.id, dict(row.budgets)
        head = (row.name, row.study_name, len(rows), sum(r.feasible for r in rows))
        entries = tuple(_front_entry(r) for r in front)
    return ParetoResult(*head, budgets, entries, rounds_.history(db, search_id))


def _best_accuracy(r: Candidate) -> float:
    """Most accurate first: by the supernet's accuracy where the candidate has one."""
    return -(r.accuracy if r.accuracy_supernet is None else r.accuracy_supernet)


def _front_entry(r: Candidate) -> FrontEntry:
    return FrontEntry(
        candidate=r.id, trial=r.trial_number, subnet=r.subnet, key=r.subnet_key,
        accuracy=r.accuracy, accuracy_supernet=r.accuracy_supernet, latency_ms=r.predicted_ms,
        params=r.params, macs=r.macs, extrapolated=tuple(r.extrapolated), round=r.round,
        measured_ms=r.measured_ms or None,
    )  # fmt: skip


def pareto(db_url: str | None, name: str) -> ParetoResult:
    """`hwnas pareto SEARCH`: the front (synced with the study first)."""
    with open_db(db_url, create=False) as db:
        with db.read() as s:
            row = find_search(s, name)
            search_id, budgets = row.id, dict(row.budgets)
            objectives = [*row.targets, *row.objectives]
            study_name, round_ = row.study_name, max(len(row.rounds) - 1, 0)
            by_supernet = bool(row.rounds) and row.rounds[-1].accuracy_predictor is not None
        study = optuna.load_study(study_name=study_name, storage=optuna_storage(db.url))
        margins = study.user_attrs.get("hwnas", {}).get("margins", {})
        problem = _problem_of(objectives, budgets, margins)
        if candidates.sync(db, search_id, study.get_trials(deepcopy=False), problem, round_):
            candidates.mark_pareto(db, search_id, problem, by_supernet)
        return summary(db, name)


def _problem_of(
    objectives: list[str], budgets: Mapping[str, float], margins: Mapping[str, float]
) -> Problem:
    targets = tuple(o for o in objectives if o not in EXTRAS)
    extras = tuple(o for o in objectives if o in EXTRAS)
    return Problem(targets, tuple(budgets.items()), extras, tuple(margins.items()))
