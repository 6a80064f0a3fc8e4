"""The report's computed figures, as pure functions of candidate dicts (no drawing, no I/O)."""

from __future__ import annotations

from typing import Any

import numpy as np

from hwnas.search.pareto import hypervolume_2d, pareto_mask
from hwnas.search.report.report_data import Record


def latency(c: Record, key: str) -> tuple[float, bool]:
    """A candidate's latency on `key`: measured where it was, else predicted (and which)."""
    if key in c["measured_ms"]:
        return float(c["measured_ms"][key]), True
    return float(c["predicted_ms"][key]), False


def hv_curve(cands: list[Record], key: str, points: int = 40) -> dict[str, list[Any]]:
    """Hypervolume of (error, predicted latency on `key`) of the feasible trials so far, in
    trial order, normalised by the box from the best to the worst corner seen (+1%)."""
    err = np.asarray([1 - c["accuracy"] for c in cands])
    lat = np.asarray([c["predicted_ms"][key] for c in cands])
    ok = np.asarray([c["feasible"] for c in cands])
    pts = np.stack([err, lat], axis=1)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    ref = hi + 0.01 * np.maximum(hi - lo, 1e-12)
    box = float(np.prod(ref - lo))
    marks = np.unique(np.geomspace(1, len(cands), min(points, len(cands))).round().astype(int))
    hv = [hypervolume_2d(pts[:m][ok[:m]], ref) / box if ok[:m].any() else 0.0 for m in marks]
    return {"trials": marks.tolist(), "hypervolume": [float(v) for v in hv]}


def fastest_at(cands: list[Record], key: str, level: float) -> Record:
    """The candidate with the lowest predicted latency on `key` among those at least as
    accurate as `level`."""
    ok = [c for c in cands if c["accuracy"] >= level]
    return min(ok, key=lambda c: c["predicted_ms"][key])


def specialisation(cands: list[Record], chosen_for: str, run_on: str) -> list[Record]:
    """How much hardware-awareness buys: at each accuracy level of the front, the subnet
    chosen for `chosen_for` run on `run_on`, beside the subnet chosen for `run_on` itself.

    Subnets are chosen as the search would, by predicted latency, among the front's feasible
    candidates (the fastest subnet on one target at an accuracy level is on the front of all
    objectives, and the front is what gets measured). The two latencies on `run_on` are both
    measured when both were, else both predicted: never one of each."""
    front = [c for c in cands if c["pareto"]]
    pool = [c for c in front if c["feasible"]] or front
    rows = []
    for level in sorted({c["accuracy"] for c in pool}, reverse=True):
        a, b = fastest_at(pool, chosen_for, level), fastest_at(pool, run_on, level)
        measured = run_on in a["measured_ms"] and run_on in b["measured_ms"]
        kind = "measured_ms" if measured else "predicted_ms"
        la, lb = float(a[kind][run_on]), float(b[kind][run_on])
        rows.append({
            "accuracy": level, "other": a["candidate"], "other_ms": la, "own": b["candidate"],
            "own_ms": lb, "measured": measured, "slowdown": la / lb,
        })  # fmt: skip
    return rows


def front_of(cands: list[Record], key: str) -> list[Record]:
    """The 2-D front (accuracy against predicted latency on `key`) among feasible candidates,
    fastest first."""
    ok = [c for c in cands if c["feasible"]]
    if not ok:
        return []
    pts = np.asarray([[1 - c["accuracy"], c["predicted_ms"][key]] for c in ok])
    mask = pareto_mask(pts)
    return sorted(
        (c for c, m in zip(ok, mask, strict=True) if m), key=lambda c: c["predicted_ms"][key]
    )
