"""Constraint honesty: measure a search's Pareto front for real and compare with the budgets.

Each target of the search that this machine can run (cpu, tflite without a device label, gpu
where JAX sees one) measures the front's subnets under the usual protocol; `measured_ms` is
stored beside `predicted_ms`, the measurements join the target's data, and the report says
how many met their budget and the worst overshoot.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from sqlalchemy import select

from db.models import Candidate, Run, Search
from db.session import Database
from latency.targets import Target
from latency.worker import measure_jobs
from search.latency_service import RunContext, build_jobs_for, record_results
from search.output import log


def local(target: Target) -> bool:
    if target.device:
        return False
    if target.kind == "gpu":
        from latency.runners import gpu_name

        return gpu_name() is not None
    return True


def remeasure_front(db: Database, search_id: int, spec) -> dict:
    with db.read() as s:
        search = s.get(Search, search_id)
        run = s.get(Run, search.run_id)
        s.expunge(run)
        front = list(
            s.scalars(select(Candidate).where(Candidate.search_id == search_id, Candidate.pareto))
        )
        subnets = {c.id: (c.subnet_key, c.subnet) for c in front}
    if not front:
        return {}
    ctx = RunContext(run)
    measured: dict[int, dict[str, float]] = {cid: {} for cid in subnets}
    for key in spec.problem.targets:
        target = Target.parse(key)
        if not local(target):
            log(f"{key}: not this machine; the front is not measured there")
            continue
        log(f"{key}: measuring the {len(front)} Pareto candidates")
        ms = _measure(db, ctx, target, subnets)
        for cid in subnets:
            measured[cid][key] = ms[subnets[cid][0]]
    with db.write() as s:
        for cid, m in measured.items():
            if m:
                s.get(Candidate, cid).measured_ms = m
    return budget_check(front, measured, dict(spec.problem.budgets))


def _measure(db: Database, ctx: RunContext, target: Target, subnets: dict) -> dict[str, float]:
    unique = {k: ctx.space.subnet_from_dict(d) for k, d in subnets.values()}
    with tempfile.TemporaryDirectory(prefix="hwnas-front-") as tmp:
        model_dir = Path(tmp) / "models"
        model_dir.mkdir()
        jobs = build_jobs_for(ctx, target, list(unique.values()), False, model_dir)
        results = measure_jobs(jobs, Path(tmp))
    record_results(db, results)
    return {r.subnet_key: r.stats["median_ms"] for r in results}


def budget_check(front, measured: dict, budgets: dict[str, float]) -> dict:
    """Per target: the front's measured/predicted ratio, and for budgeted targets the share
    of candidates within the budget and the worst overshoot."""
    out = {}
    for key in {k for m in measured.values() for k in m}:
        pred = np.asarray([c.predicted_ms[key] for c in front])
        meas = np.asarray([measured[c.id][key] for c in front])
        entry = {
            "n": len(front),
            "median_measured_over_predicted": float(np.median(meas / pred)),
            "within10_of_predicted": float(np.mean(np.abs(meas / pred - 1) <= 0.10)),
        }
        if key in budgets:
            over = meas / budgets[key] - 1
            entry |= {
                "budget_ms": budgets[key],
                "within_budget": float(np.mean(over <= 0)),
                "worst_overshoot": float(max(over.max(), 0.0)),
            }
        out[key] = entry
    return out
