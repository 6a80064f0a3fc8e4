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
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from hwnas.db.models import Candidate, Export, Measurement, Run, Search
from hwnas.db.models import Target as TargetRow
from hwnas.db.session import Database, open_db
from hwnas.latency.protocol import Protocol
from hwnas.latency.targets import Target
from hwnas.search.output import UserError
from hwnas.search.search_config import DemoConfig
from hwnas.search.services import export as export_service
from hwnas.search.services import measuring as latency_service
from hwnas.search.services import prediction as predictor_service
from hwnas.search.services import search as search_service
from hwnas.search.services.remeasure import budget_check
from hwnas.search.services.training import train
from hwnas.supernet.space import SearchSpace
from sqlalchemy import func, select

logger = logging.getLogger(__name__)

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


def step(i: int, text: str) -> float:
    logger.info(f"\n[{i}/{STEPS}] {text}")
    return time.perf_counter()


def _reused(what: str) -> dict:
    logger.info(f"  reusing {what} (delete the folder to start over)")
    return {"reused": True}


# ---- steps ------------------------------------------------------------------------------------


def train_step(db: Database, cfg: DemoConfig) -> dict:
    """`hwnas train`'s result, or the same keys of the finished run found in the folder."""
    with db.read() as s:
        run = s.scalars(select(Run).where(Run.name == cfg.run)).one_or_none()
        done = run is not None and run.status == "finished"
        if done:
            found = {"run": run.name, "checkpoint": run.checkpoint, "steps": run.steps,
                     "seconds": run.seconds, "val_acc_largest": run.val_acc_largest,
                     "val_acc_smallest": run.val_acc_smallest}  # fmt: skip
    if done:
        return _reused(f"the trained supernet {cfg.run!r}") | found
    result = train(
        cfg.db_url, "digits", epochs=cfg.epochs, seed=cfg.seed, name=cfg.run,
        resume=run is not None, runs_dir=cfg.folder / "runs",
    )  # fmt: skip
    return {"reused": False} | result


def measured_count(db: Database, run: str, target: Target) -> int:
    with db.read() as s:
        return s.scalar(
            select(func.count(Measurement.id))
            .join(TargetRow, TargetRow.id == Measurement.target_id)
            .join(Run, Run.id == Measurement.run_id)
            .where(TargetRow.key == target.key, Run.name == run, Measurement.kind == "subnet")
        )


def measure_step(db: Database, cfg: DemoConfig, target: Target, n: int) -> dict:
    have = measured_count(db, cfg.run, target)
    if have >= n:
        found = {"target": target.key, "measured": have, "subnets": have}
        return _reused(f"{have} measured subnets on {target.key}") | found
    protocol = CPU_PROTOCOL if target == CPU else Protocol()
    result = latency_service.measure(
        cfg.db_url, cfg.run, target, n - have, cfg.seed + have, protocol=protocol, noise=False
    )
    return {"reused": False} | result | {"subnets": measured_count(db, cfg.run, target)}


def fit_step(db: Database, cfg: DemoConfig, target: Target, measured_now: bool) -> dict:
    """Fit unless the measurements are unchanged and a predictor exists."""
    if not measured_now:
        try:
            key = run_space(db, cfg).key
            _, metrics = predictor_service.load_predictor_row(db, target, space_key=key)
            return _reused(f"the {target.key} predictor") | {"holdout": metrics}
        except UserError:
            pass
    key = run_space(db, cfg).key
    return {"reused": False} | predictor_service.fit(cfg.db_url, target, space_key=key)


def run_space(db: Database, cfg: DemoConfig) -> SearchSpace:
    with db.read() as s:
        return SearchSpace.from_dict(s.scalars(select(Run.space).where(Run.name == cfg.run)).one())


def budget_for(db: Database, cfg: DemoConfig) -> float:
    """A budget that about `budget_quantile` of the space meets, rounded to 2 digits."""
    space = run_space(db, cfg)
    predictor = predictor_service.load_predictor(db, TFLITE, space_key=space.key)
    subnets = [space.sample(np.random.default_rng(cfg.seed + i)) for i in range(2000)]
    ms = float(np.quantile(predictor.predict(subnets), cfg.budget_quantile))
    return float(f"{ms:.2g}")


def search_step(db: Database, cfg: DemoConfig) -> dict:
    with db.read() as s:
        row = s.scalars(select(Search).where(Search.name == cfg.search)).one_or_none()
        n = (
            0
            if row is None
            else s.scalar(select(func.count(Candidate.id)).where(Candidate.search_id == row.id))
        )
        finished = row is not None and row.status == "finished" and n >= cfg.trials
        finished = finished and bool(row.rounds)  # a search of an older hwnas: continue it
    if finished:
        found = search_service.summary(db, cfg.search)
        check = front_check(found["pareto"], found["budgets"])
        return _reused(f"search {cfg.search!r} ({n} trials)") | found | {"budget_check": check}
    budget = budget_for(db, cfg) if row is None else row.budgets[TFLITE.key]
    logger.info(
        f"  targets cpu and {TFLITE.key}; budget {budget:g} ms on tflite; {cfg.trials} trials"
    )
    result = search_service.search(
        cfg.db_url,
        cfg.run,
        [CPU.key, TFLITE.key],
        [f"{TFLITE.key}={budget}"],
        cfg.trials,
        name=cfg.search,
        seed=cfg.seed,
        rounds=cfg.rounds,
        protocols={CPU.key: FRONT_CPU_PROTOCOL},
    )
    return {"reused": False} | result


def front_check(pareto: list[dict], budgets: dict) -> dict:
    """The measured front against its predictions and budgets, from stored candidates."""
    measured = [c for c in pareto if c.get("measured_ms")]
    front = [SimpleNamespace(id=c["candidate"], predicted_ms=c["latency_ms"]) for c in measured]
    return budget_check(front, {c["candidate"]: c["measured_ms"] for c in measured}, budgets)


def best_feasible(front: list[dict], budgets: dict) -> dict:
    """The most accurate front candidate within every budget, measured where it was."""

    def fits(c: dict) -> bool:
        lat = c.get("measured_ms") or c["latency_ms"]
        return all(lat.get(k, c["latency_ms"][k]) <= b for k, b in budgets.items())

    ok = [c for c in front if fits(c)] or front
    return max(ok, key=lambda c: (c["accuracy"], -c["latency_ms"][TFLITE.key]))


def export_step(db: Database, cfg: DemoConfig, candidate: int) -> dict:
    path = cfg.export_path.resolve()
    with db.read() as s:
        row = s.scalars(
            select(Export).where(Export.path == str(path), Export.candidate_id == candidate)
        ).first()
        proof = None if row is None else dict(row.proof) | {"bytes": row.bytes}
    if proof is not None and path.exists():
        return _reused(f"the export {path}") | {"path": str(path)} | proof
    path.parent.mkdir(parents=True, exist_ok=True)
    req = export_service.ExportRequest(str(path), candidate, None, None, "int8", force=True)
    return {"reused": False} | export_service.export(cfg.db_url, req)


# ---- the command ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoResult:
    """What `hwnas demo` did: each step's result (by name: train, measure, predictors, search,
    budget_check, best, export), the seconds each timed step took, the whole run's, and the
    commands to go on with."""

    folder: str
    db: str
    steps: dict
    step_seconds: dict[str, float]
    seconds: float
    next: str
    report: str

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def demo(cfg: DemoConfig) -> DemoResult:
    cfg.check()
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


def run_steps(db: Database, cfg: DemoConfig) -> tuple[dict, dict[str, float]]:
    """Each step's result by name, and the seconds each timed step took."""
    steps: dict = {}
    seconds: dict[str, float] = {}

    def timed(name: str, i: int, text: str, fn, *args) -> dict:
        t0 = step(i, text)
        steps[name] = fn(*args)
        seconds[name] = round(time.perf_counter() - t0, 1)
        return steps[name]

    timed(
        "train", 1, f"training the supernet on digits ({cfg.epochs} epochs)", train_step, db, cfg
    )
    sizes = {CPU: cfg.n_cpu, TFLITE: cfg.n_tflite}
    what = "cpu (XLA) and tflite (LiteRT fp32, 1 thread)"
    timed(
        "measure",
        2,
        f"measuring subnets on {what}",
        lambda: {t.key: measure_step(db, cfg, t, n) for t, n in sizes.items()},
    )
    timed(
        "predictors",
        3,
        "fitting latency predictors (20% of subnets held out)",
        lambda: {
            t.key: fit_step(db, cfg, t, not steps["measure"][t.key]["reused"]) for t in sizes
        },
    )
    found = timed(
        "search", 4, "searching cpu x tflite under a tflite budget", search_step, db, cfg
    )
    step(5, "Pareto front re-measured on both targets (done by the search)")
    steps["budget_check"] = found.get("budget_check")
    best = best_feasible(found["pareto"], found["budgets"])
    logger.info(f"  best feasible: candidate {best['candidate']}, accuracy {best['accuracy']:.4f}")
    steps["best"] = {k: best[k] for k in ("candidate", "accuracy", "latency_ms", "key")} | {
        "measured_ms": best.get("measured_ms")
    }
    timed(
        "export",
        6,
        "exporting it to int8 TFLite with proof",
        export_step,
        db,
        cfg,
        best["candidate"],
    )
    step(7, "done")
    return steps, seconds


def config_from(folder: str | Path, **overrides) -> DemoConfig:
    cfg = DemoConfig(Path(folder))
    return dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})


def _round_line(r: dict) -> str:
    """One round of the search's closed loop: each target's front against its measurement."""
    a = r.get("agreement") or {}
    parts = [
        f"{key} {v['n'] * v['within10_of_predicted']:.0f}/{v['n']} "
        f"(worst {100 * v['worst_off']:.0f}% off)"
        for key, v in sorted(a.items())
    ]
    what = "; ".join(parts) if parts else "front not measured"
    return f"  round {r['round']}     {r['trials']} trials; front within 10% of predicted: {what}"


def summary_text(result: DemoResult) -> str:
    """The demo's result in a few readable lines."""
    st, lines = result.steps, [f"hwnas demo: done in {result.seconds:.0f} s"]

    def how(name: str) -> str:
        return "reused" if st[name].get("reused") else f"{result.step_seconds[name]:.0f} s"

    tr = st["train"]
    lines.append(
        f"  supernet    val accuracy {tr['val_acc_largest']:.3f} (largest), "
        f"{tr['val_acc_smallest']:.3f} (smallest) [{how('train')}]"
    )
    for key, fit in st["predictors"].items():
        h, n = fit["holdout"], st["measure"][key]["subnets"]
        lines.append(
            f"  {key:<15} {n} subnets measured; predictor on the {h['n']} held out: "
            f"{100 * h['within10']:.0f}% within 10%, Kendall tau {h['kendall']:.2f}"
        )
    s = st["search"]
    rate = f", {s['trials_per_s']:.1f} trials/s" if s.get("trials_per_s") else ""
    lines.append(
        f"  search      {s['trials']} trials{rate}, {len(s['pareto'])} on the front, "
        "budget "
        + ", ".join(f"{k} <= {v:g} ms" for k, v in s["budgets"].items())
        + f" [{how('search')}]"
    )
    for r in s.get("rounds", []):
        lines.append(_round_line(r))
    for key, c in (st.get("budget_check") or {}).items():
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
    b, e = st["best"], st["export"]
    lines.append(f"  best        candidate {b['candidate']}, accuracy {b['accuracy']:.4f}")
    pm = f"{e['measured_ms']:.3f} ms measured" if e.get("measured_ms") else "not measured"
    pp = (f" vs {e['predicted_ms']:.3f} predicted" if e.get("predicted_ms")
          else " (no tflite-int8-t1 predictor to compare with)")  # fmt: skip
    lines.append(
        f"  export      {e['path']} ({e['bytes']:,} bytes): accuracy {e['val_acc_tflite']:.4f} "
        f"(JAX {e['val_acc_jax']:.4f}), {pm}{pp} [{how('export')}]"
    )
    lines.append(f"open the dashboard: {result.next}")
    lines.append(f"write the report:   {result.report}")
    lines.append(
        "(a few dozen subnets per target keep the demo short; `hwnas measure --n 300` "
        "and `hwnas predictor fit` give the predictor figures in the README)"
    )
    return "\n".join(lines)
