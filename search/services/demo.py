"""`hwnas demo`: from nothing to a measured, exported model on the embedded digits dataset.

Seven steps, each one the service a CLI command calls: train the supernet, measure the `cpu`
and `tflite` (fp32) targets, fit and evaluate their predictors, search both targets under a
budget (which re-measures the Pareto front), export the most accurate feasible candidate to
int8 TFLite. Everything goes into one folder (its
database, checkpoints and exports); a second run finds each step's result there, says so and
reuses it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import numpy as np

from hwnas.db import view_store
from hwnas.db.session import Database, open_db
from hwnas.extras import require
from hwnas.latency.protocol import Protocol
from hwnas.latency.targets import Target
from hwnas.search.objective import Problem
from hwnas.search.output import UserError
from hwnas.search.result import Result, jsonable
from hwnas.search.search_config import DemoConfig, SearchConfig
from hwnas.search.services import export as export_service
from hwnas.search.services import measuring as latency_service
from hwnas.search.services import prediction as predictor_service
from hwnas.search.services import search as search_service
from hwnas.search.services.remeasure import budget_check
from hwnas.search.services.training import train
from hwnas.supernet.space import SearchSpace

logger = logging.getLogger(__name__)
T = TypeVar("T")

CPU, TFLITE = Target("cpu"), Target("tflite", 1, "fp32")
# The demo's cpu measurements: one pass of at most 100 calls instead of two passes over up to
# 2 s of calls (a 4-13 ms model's median then carries about 2% more noise, small beside what
# 24 subnets teach a predictor); neither target re-measures a noise floor. About 3 min less.
CPU_PROTOCOL = Protocol(passes=1, max_reps=100)
# The search's fronts (a few subnets a round, each judged within +-10%): 500 calls, a median
# about 2.2x steadier (XLA's calls vary by 13-20% here; with 100 calls, subnets of equal MACs
# measured 1.6-2.5 ms and the cpu front agreed 3 of 9 after four rounds). About 1 s more a
# 2 ms subnet, beside its 1-2 s compile. No re-measurement of "noisy" subnets: among a few
# subnets only the absolute 10% IQR rule applies, and XLA's call-to-call spread here (13-20%)
# sent every one through twice (a profile of one round: half of its cpu timing).
FRONT_CPU_PROTOCOL = Protocol(passes=1, max_reps=500, remeasure_iqr=10.0)
STEPS = 7


# ---- what it returns --------------------------------------------------------------------------


@dataclass(frozen=True)
class Step(Result):
    """One step: whether the folder already held its result (`reused`), and that result: the
    service's own when the step ran now, what an earlier run left when reused. Its JSON is
    `reused` followed by the result's keys; `step["key"]` reads one of them."""

    reused: bool
    result: Result | Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"reused": self.reused} | jsonable(self.result)

    def __getitem__(self, key: str) -> Any:
        return self.to_json()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_json().get(key, default)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Step:
        return cls(bool(data["reused"]), {k: v for k, v in data.items() if k != "reused"})


@dataclass(frozen=True)
class Best(Result):
    """The front's most accurate candidate within every budget: its predicted latencies and
    the measured ones where the search measured it."""

    candidate: int
    accuracy: float
    latency_ms: dict[str, float]
    key: str
    measured_ms: dict[str, float] | None = None


@dataclass(frozen=True)
class DemoSteps(Result):
    """Each step's result: the training, the measurements and predictors per target key, the
    search, its front's check against the budgets (None: nothing measured), the subnet chosen
    and its export."""

    train: Step
    measure: dict[str, Step]
    predictors: dict[str, Step]
    search: Step
    budget_check: Mapping[str, Any] | None
    best: Best
    export: Step

    def __getitem__(self, name: str) -> Any:
        """A step by name, as in the JSON (`steps["search"]["rounds"]`)."""
        return getattr(self, name)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DemoSteps:
        steps = {k: {t: Step.from_json(v) for t, v in data[k].items()}
                 for k in ("measure", "predictors")}  # fmt: skip
        return cls(
            train=Step.from_json(data["train"]),
            search=Step.from_json(data["search"]),
            budget_check=data["budget_check"],
            best=Best(**data["best"]),
            export=Step.from_json(data["export"]),
            **steps,
        )


@dataclass(frozen=True)
class DemoResult(Result):
    """What `hwnas demo` did: each step's result, the seconds each timed step took, the whole
    run's, and the commands to go on with."""

    folder: str
    db: str
    steps: DemoSteps
    step_seconds: dict[str, float]
    seconds: float
    next: str
    report: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DemoResult:
        """The result again from its JSON (`hwnas demo --json`)."""
        return cls(**(dict(data) | {"steps": DemoSteps.from_json(data["steps"])}))


def step(i: int, text: str) -> float:
    logger.info(f"\n[{i}/{STEPS}] {text}")
    return time.perf_counter()


def _reused(what: str, found: Mapping[str, Any]) -> Step:
    logger.info(f"  reusing {what} (delete the folder to start over)")
    return Step(True, found)


# ---- steps ------------------------------------------------------------------------------------


def train_step(db: Database, cfg: DemoConfig) -> Step:
    """`hwnas train`'s result, or the same keys of the finished run found in the folder."""
    with db.read() as s:
        run = view_store.run_named(s, cfg.run)
    if run is not None and run.status == "finished":
        found = {"run": run.name, "checkpoint": run.checkpoint, "steps": run.steps,
                 "seconds": run.seconds, "val_acc_largest": run.val_acc_largest,
                 "val_acc_smallest": run.val_acc_smallest}  # fmt: skip
        return _reused(f"the trained supernet {cfg.run!r}", found)
    result = train(
        cfg.db_url, "digits", epochs=cfg.epochs, seed=cfg.seed, name=cfg.run,
        resume=run is not None, runs_dir=cfg.folder / "runs",
    )  # fmt: skip
    return Step(False, result)


def measured_count(db: Database, run: str, target: Target) -> int:
    return view_store.subnet_measurements(db, run, target.key)


def measure_step(db: Database, cfg: DemoConfig, target: Target, n: int) -> Step:
    have = measured_count(db, cfg.run, target)
    if have >= n:
        found = {"target": target.key, "measured": have, "subnets": have}
        return _reused(f"{have} measured subnets on {target.key}", found)
    protocol = CPU_PROTOCOL if target == CPU else Protocol()
    result = latency_service.measure(
        cfg.db_url, cfg.run, target, n - have, cfg.seed + have, protocol=protocol, noise=False
    )
    return Step(False, jsonable(result) | {"subnets": measured_count(db, cfg.run, target)})


def fit_step(db: Database, cfg: DemoConfig, target: Target, measured_now: bool) -> Step:
    """Fit unless the measurements are unchanged and a predictor exists."""
    key = run_space(db, cfg).key
    if not measured_now:
        try:
            _, metrics = predictor_service.load_predictor_row(db, target, space_key=key)
            return _reused(f"the {target.key} predictor", {"holdout": metrics})
        except UserError:
            pass
    return Step(False, predictor_service.fit(cfg.db_url, target, space_key=key))


def run_space(db: Database, cfg: DemoConfig) -> SearchSpace:
    with db.read() as s:
        run = view_store.run_named(s, cfg.run)
    if run is None:
        raise UserError(f"no run named {cfg.run!r} in {cfg.db_url}")
    return SearchSpace.from_dict(run.space)


def budget_for(db: Database, cfg: DemoConfig) -> float:
    """A budget that about `budget_quantile` of the space meets, rounded to 2 digits."""
    space = run_space(db, cfg)
    predictor = predictor_service.load_predictor(db, TFLITE, space_key=space.key)
    subnets = [space.sample(np.random.default_rng(cfg.seed + i)) for i in range(2000)]
    ms = float(np.quantile(predictor.predict(subnets), cfg.budget_quantile))
    return float(f"{ms:.2g}")


def search_step(db: Database, cfg: DemoConfig) -> Step:
    with db.read() as s:
        row = view_store.search_named(s, cfg.search)
        n = 0 if row is None else view_store.candidate_count(s, row.id)
        rounds = row is not None and bool(row.rounds)
    # a search of an older hwnas (no rounds recorded): continue it
    if row is not None and row.status == "finished" and n >= cfg.trials and rounds:
        found = jsonable(search_service.summary(db, cfg.search))
        check = front_check(found["pareto"], found["budgets"])
        return _reused(f"search {cfg.search!r} ({n} trials)", found | {"budget_check": check})
    budget = budget_for(db, cfg) if row is None else row.budgets[TFLITE.key]
    logger.info(
        f"  targets cpu and {TFLITE.key}; budget {budget:g} ms on tflite; {cfg.trials} trials"
    )
    result = search_service.search(
        cfg.run,
        Problem((CPU.key, TFLITE.key), ((TFLITE.key, budget),)),
        SearchConfig(trials=cfg.trials, name=cfg.search, seed=cfg.seed, rounds=cfg.rounds),
        db_url=cfg.db_url,
        protocols={CPU.key: FRONT_CPU_PROTOCOL},
    )
    return Step(False, result)


def front_check(pareto: list[dict[str, Any]], budgets: dict[str, float]) -> Any:
    """The measured front against its predictions and budgets, from stored candidates."""
    measured = [c for c in pareto if c.get("measured_ms")]
    front = [SimpleNamespace(id=c["candidate"], predicted_ms=c["latency_ms"]) for c in measured]
    check = budget_check(front, {c["candidate"]: c["measured_ms"] for c in measured}, budgets)
    return jsonable(check)


def best_feasible(front: list[dict[str, Any]], budgets: dict[str, float]) -> Best:
    """The most accurate front candidate within every budget, measured where it was."""

    def fits(c: dict[str, Any]) -> bool:
        lat = c.get("measured_ms") or c["latency_ms"]
        return all(lat.get(k, c["latency_ms"][k]) <= b for k, b in budgets.items())

    ok = [c for c in front if fits(c)] or front
    c = max(ok, key=lambda c: (c["accuracy"], -c["latency_ms"][TFLITE.key]))
    return Best(c["candidate"], c["accuracy"], c["latency_ms"], c["key"], c.get("measured_ms"))


def export_step(db: Database, cfg: DemoConfig, candidate: int) -> Step:
    path = cfg.export_path.resolve()
    with db.read() as s:
        row = view_store.export_at(s, str(path), candidate)
    if row is not None and path.exists():
        found = {"path": str(path)} | dict(row.proof) | {"bytes": row.bytes}
        return _reused(f"the export {path}", found)
    path.parent.mkdir(parents=True, exist_ok=True)
    req = export_service.ExportRequest(str(path), candidate, None, None, "int8", force=True)
    return Step(False, export_service.export(cfg.db_url, req))


# ---- the command ------------------------------------------------------------------------------


def demo(cfg: DemoConfig) -> DemoResult:
    cfg.check()
    require("export", "hwnas demo (it measures and exports TFLite)")
    cfg.folder.mkdir(parents=True, exist_ok=True)
    logger.info(f"hwnas demo: everything goes to {cfg.folder.resolve()} (database {cfg.db_url})")
    t_all = time.perf_counter()
    with open_db(cfg.db_url, create=True) as db:
        steps, step_seconds = run_steps(db, cfg)
    return DemoResult(
        folder=str(cfg.folder.resolve()),
        db=cfg.db_url,
        steps=steps,
        step_seconds=step_seconds,
        seconds=round(time.perf_counter() - t_all, 1),
        next=f"hwnas dashboard --db {cfg.db_url}",
        report=f"hwnas report {cfg.search} --out {cfg.folder / 'report'} --db {cfg.db_url}",
    )


def run_steps(db: Database, cfg: DemoConfig) -> tuple[DemoSteps, dict[str, float]]:
    """Each step's result, and the seconds each timed step took."""
    seconds: dict[str, float] = {}

    def timed(name: str, i: int, text: str, fn: Callable[[], T]) -> T:
        t0 = step(i, text)
        out = fn()
        seconds[name] = round(time.perf_counter() - t0, 1)
        return out

    text = f"training the supernet on digits ({cfg.epochs} epochs)"
    trained = timed("train", 1, text, lambda: train_step(db, cfg))
    sizes = {CPU: cfg.n_cpu, TFLITE: cfg.n_tflite}
    text = "measuring subnets on cpu (XLA) and tflite (LiteRT fp32, 1 thread)"
    measure = timed(
        "measure", 2, text, lambda: {t.key: measure_step(db, cfg, t, n) for t, n in sizes.items()}
    )
    text = "fitting latency predictors (20% of subnets held out)"
    predictors = timed(
        "predictors",
        3,
        text,
        lambda: {t.key: fit_step(db, cfg, t, not measure[t.key].reused) for t in sizes},
    )
    text = "searching cpu x tflite under a tflite budget"
    found = timed("search", 4, text, lambda: search_step(db, cfg))
    step(5, "Pareto front re-measured on both targets (done by the search)")
    best = best_feasible(found["pareto"], found["budgets"])
    logger.info(f"  best feasible: candidate {best.candidate}, accuracy {best.accuracy:.4f}")
    text = "exporting it to int8 TFLite with proof"
    exported = timed("export", 6, text, lambda: export_step(db, cfg, best.candidate))
    step(7, "done")
    check = found.get("budget_check")
    return DemoSteps(trained, measure, predictors, found, check, best, exported), seconds


def config_from(folder: str | Path, **overrides: Any) -> DemoConfig:
    cfg = DemoConfig(Path(folder))
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def _round_line(r: Mapping[str, Any]) -> str:
    """One round of the search's closed loop: each target's front against its measurement."""
    a = r.get("agreement") or {}
    parts = [
        f"{key} {v['n'] * v['within10_of_predicted']:.0f}/{v['n']} "
        f"(worst {100 * v['worst_off']:.0f}% off)"
        for key, v in sorted(a.items())
    ]
    what = "; ".join(parts) if parts else "front not measured"
    return f"  round {r['round']}     {r['trials']} trials; front within 10% of predicted: {what}"


def _disagree_lines(rounds: list[Mapping[str, Any]]) -> list[str]:
    """The last round's front subnets that still disagree with their predictions."""
    a = (rounds[-1].get("agreement") or {}) if rounds else {}
    out = []
    for key, v in sorted(a.items()):
        for d in v.get("disagree", []):
            out.append(
                f"  still off on {key}: candidate {d['candidate']} predicted "
                f"{d['predicted_ms']:.4g} ms, measured {d['measured_ms']:.4g} ms "
                f"(prediction {100 * d['off']:+.0f}%)"
            )
    return out


def summary_text(result: DemoResult) -> str:
    """The demo's result in a few readable lines."""
    st = result.steps
    lines = [f"hwnas demo: done in {result.seconds:.0f} s"]

    def how(name: str, done: Step) -> str:
        return "reused" if done.reused else f"{result.step_seconds[name]:.0f} s"

    tr = st.train
    lines.append(
        f"  supernet    val accuracy {tr['val_acc_largest']:.3f} (largest), "
        f"{tr['val_acc_smallest']:.3f} (smallest) [{how('train', tr)}]"
    )
    for key, fit in st.predictors.items():
        h, n = fit["holdout"], st.measure[key]["subnets"]
        lines.append(
            f"  {key:<15} {n} subnets measured; predictor on the {h['n']} held out: "
            f"{100 * h['within10']:.0f}% within 10%, Kendall tau {h['kendall']:.2f}"
        )
    lines += _search_lines(st, how("search", st.search))
    b, e = st.best, st.export
    lines.append(f"  best        candidate {b.candidate}, accuracy {b.accuracy:.4f}")
    pm = f"{e['measured_ms']:.3f} ms measured" if e.get("measured_ms") else "not measured"
    pp = (f" vs {e['predicted_ms']:.3f} predicted" if e.get("predicted_ms")
          else " (no tflite-int8-t1 predictor to compare with)")  # fmt: skip
    lines.append(
        f"  export      {e['path']} ({e['bytes']:,} bytes): accuracy {e['val_acc_tflite']:.4f} "
        f"(JAX {e['val_acc_jax']:.4f}), {pm}{pp} [{how('export', e)}]"
    )
    lines.append(f"open the dashboard: {result.next}")
    lines.append(f"write the report:   {result.report}")
    lines.append(
        "(a few dozen subnets per target keep the demo short; `hwnas measure --n 300` "
        "and `hwnas predictor fit` give the predictor figures in the README)"
    )
    return "\n".join(lines)


def _search_lines(st: DemoSteps, how: str) -> list[str]:
    """The search's line, one per closed-loop round, one per target of the front's check."""
    s = st.search.to_json()
    rate = f", {s['trials_per_s']:.1f} trials/s" if s.get("trials_per_s") else ""
    lines = [
        f"  search      {s['trials']} trials{rate}, {len(s['pareto'])} on the front, "
        "budget " + ", ".join(f"{k} <= {v:g} ms" for k, v in s["budgets"].items()) + f" [{how}]"
    ]
    lines += [_round_line(r) for r in s.get("rounds", [])]
    lines += _disagree_lines(s.get("rounds", []))
    for key, c in (st.budget_check or {}).items():
        extra = (
            (
                f", {100 * c['within_budget']:.0f}% within budget, worst overshoot "
                f"{100 * c['worst_overshoot']:.1f}%"
            )
            if "within_budget" in c
            else ""
        )
        lines.append(
            f"  front on {key}: measured/predicted {c['median_measured_over_predicted']:.2f}, "
            f"{c['n'] * c['within10_of_predicted']:.0f} of {c['n']} within 10%{extra}"
        )
    return lines
