"""Constraint honesty: measure a search's Pareto front for real and compare with the budgets.

Each target of the search that this machine can run (cpu, tflite without a device label, gpu
where JAX sees one) measures the front's subnets under the usual protocol, beside `anchors`
that put the measurements in the unit of the target's earlier ones; `measured_ms` is stored
beside `predicted_ms`, the measurements join the target's data, and the report says
how many met their budget and the worst overshoot.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from typing import Protocol as Shape

import numpy as np

from hwnas.db import search_store as store
from hwnas.db.models import Candidate
from hwnas.db.session import Database
from hwnas.latency.drift import FEW_ANCHORS
from hwnas.latency.metrics import relative_error, within
from hwnas.latency.protocol import Protocol
from hwnas.latency.targets import Target
from hwnas.latency.worker import measure_jobs
from hwnas.search.result import Result
from hwnas.search.services.anchors import anchors
from hwnas.search.services.measuring import anchor_jobs, build_jobs_for, record_results
from hwnas.search.services.model_source import RunContext

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Disagreement(Result):
    """A front subnet whose measurement is beyond +-10% of its prediction."""

    candidate: int
    predicted_ms: float
    measured_ms: float
    off: float  # predicted / measured - 1: the prediction's error, which puts the subnet
    # outside +-10% as `within10_of_predicted` counts


DISAGREE = 0.10  # beyond this relative error, a front subnet disagrees


@dataclass(frozen=True)
class FrontCheck(Result):
    """One target's measured front against its predictions (and its budget, where it has
    one); stored as a round's agreement. Optional figures are left out of the JSON."""

    n: int
    median_measured_over_predicted: float
    within10_of_predicted: float
    worst_off: float
    budget_ms: float | None = None
    within_budget: float | None = None
    worst_overshoot: float | None = None
    fresh: int | None = None  # the subnets measured now (not earlier in the search)
    fresh_within10: float | None = None
    disagree: tuple[Disagreement, ...] = ()  # the subnets beyond +-10%, worst first

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in super().to_json().items() if v is not None and v != []}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FrontCheck:
        names = {f.name for f in fields(cls)}
        read = {k: v for k, v in data.items() if k in names}
        read["disagree"] = tuple(Disagreement(**d) for d in data.get("disagree", ()))
        return cls(**read)

    @property
    def agrees(self) -> bool:
        return self.within10_of_predicted >= 1.0


Checks = dict[str, FrontCheck]  # target key -> its check


@dataclass(frozen=True)
class Measured:
    """Candidate id -> target -> ms, and per target the subnet keys measured now."""

    ms: dict[int, dict[str, float]]
    fresh: dict[str, set[str]]


class Priced(Shape):
    """What `budget_check` reads of a front entry: a candidate row or the like."""

    @property
    def id(self) -> int: ...

    @property
    def predicted_ms(self) -> Mapping[str, Any]: ...


def local(target: Target) -> bool:
    """Whether this machine runs `target` (not an imported one, nor one of another device)."""
    if target.device or not target.measurable:
        return False
    if target.kind == "gpu":
        from hwnas.latency.runners import gpu_name

        return gpu_name() is not None
    return True


def remeasure_front(
    db: Database, search_id: int, problem, protocols: Mapping[str, Protocol] = {}
) -> Checks:
    """Measure the front on every target this machine runs (a subnet measured before for this
    search is not measured again; extrapolated predictions first) and compare it with the
    predictions and budgets."""
    front = front_rows(db, search_id)
    if not front:
        return {}
    order = sorted(front, key=lambda c: not c.extrapolated)
    got = measure_candidates(db, search_id, problem.targets, [c.id for c in order], protocols)
    check = budget_check(front, got.ms, dict(problem.budgets))
    for key, entry in check.items():  # the subnets measured now: predicted before measured
        new = [c for c in front if c.subnet_key in got.fresh.get(key, ())]
        share = budget_check(new, got.ms, {})[key].within10_of_predicted if new else None
        check[key] = replace(entry, fresh=len(new), fresh_within10=share)
    return check


def front_rows(db: Database, search_id: int) -> list[Candidate]:
    return store.front(db, search_id)


def measure_candidates(
    db: Database, search_id: int, targets: Iterable[str], ids: Sequence[int],
    protocols: Mapping[str, Protocol] = {},
) -> Measured:  # fmt: skip
    """Measure the candidates `ids` (in that order) on each of `targets` this machine runs
    (under `protocols[target]`, default the standard protocol), reusing what this search
    measured before for the same subnet; store `measured_ms`."""
    targets = list(targets)
    with db.read() as s:
        run = store.search_run(s, search_id)
        s.expunge(run)
        rows = store.candidates(s, search_id)
    known: dict[str, dict[str, float]] = {}
    for r in rows:
        known.setdefault(r.subnet_key, {}).update(r.measured_ms or {})
    by_id = {r.id: r for r in rows}
    wanted = [by_id[i] for i in ids]
    ctx: RunContext | None = None
    fresh: dict[str, set[str]] = {}
    for key in targets:
        target = Target.parse(key)
        if not local(target):
            logger.info(f"{key}: not this machine; the front is not measured there")
            continue
        todo = {c.subnet_key: c.subnet for c in wanted if key not in known.get(c.subnet_key, {})}
        if todo:
            ctx = ctx or RunContext(run)
            logger.info(f"{key}: measuring {len(todo)} candidates")
            protocol = protocols.get(key, Protocol())
            for k, ms in _measure(db, ctx, target, todo, protocol).items():
                known.setdefault(k, {})[key] = ms
            fresh[key] = set(todo)
    out = {
        c.id: {k: v for k, v in known.get(c.subnet_key, {}).items() if k in targets}
        for c in wanted
    }
    store.set_measured(db, out)
    return Measured(out, fresh)


def _measure(
    db: Database, ctx: RunContext, target: Target, subnets: Mapping[str, Any], protocol: Protocol
) -> dict[str, float]:
    """`subnets`: key -> subnet dict; returns key -> median ms, in the units of the target's
    earlier measurements where it has some (`anchors`)."""
    unique = {k: ctx.space.subnet_from_dict(d) for k, d in subnets.items()}
    refs, stored = anchors(db, ctx.space, target, list(unique.values()), FEW_ANCHORS)
    if not refs:
        logger.info(f"{target.key}: the front is measured without anchors (nothing of this "
                    "space measured on it before)")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="hwnas-front-") as tmp:
        model_dir = Path(tmp) / "models"
        model_dir.mkdir()
        own = build_jobs_for(ctx, target, list(unique.values()), False, model_dir)
        ref_jobs, baseline = anchor_jobs(ctx, target, refs, stored, model_dir)
        results = measure_jobs(own, Path(tmp), protocol, refs=ref_jobs, baseline=baseline)
    if ref_jobs:
        drift = np.median([r.stats.get("drift", 1.0) for r in results])
        logger.info(f"{target.key}: calls took {drift:.2f}x as long as at the anchors' "
                    "measurement; divided out")  # fmt: skip
    record_results(db, results)
    return {r.subnet_key: r.stats["median_ms"] for r in results}


def budget_check(
    front: Sequence[Priced], measured: Mapping[int, Mapping[str, float]],
    budgets: Mapping[str, float],
) -> Checks:  # fmt: skip
    """Per target: the front's measured/predicted ratio, and for budgeted targets the share
    of candidates within the budget and the worst overshoot."""
    out = {}
    for key in {k for c in front for k in measured.get(c.id, {})}:
        part = [c for c in front if key in measured.get(c.id, {})]
        pred = np.asarray([c.predicted_ms[key] for c in part])
        meas = np.asarray([measured[c.id][key] for c in part])
        off = pred / meas - 1
        rel = np.abs(off)
        worst = np.argsort(-rel)
        entry = FrontCheck(
            n=len(part),
            median_measured_over_predicted=float(np.median(meas / pred)),
            within10_of_predicted=within(pred, meas, DISAGREE),
            worst_off=float(relative_error(pred, meas).max()),
            disagree=tuple(
                Disagreement(part[i].id, float(pred[i]), float(meas[i]), float(off[i]))
                for i in worst
                if rel[i] > DISAGREE
            ),
        )
        if key in budgets:
            over = meas / budgets[key] - 1
            entry = replace(
                entry,
                budget_ms=budgets[key],
                within_budget=float(np.mean(over <= 0)),
                worst_overshoot=float(max(over.max(), 0.0)),
            )
        out[key] = entry
    return out
