"""Pareto fronts and hypervolume: pure numpy over objective matrices.

Objectives are given as a matrix `(n points, m objectives)` in "minimise" form (negate
accuracy before calling). Infeasible points never belong to a front.
"""

from __future__ import annotations

import numpy as np


def pareto_mask(points: np.ndarray, feasible: np.ndarray | None = None) -> np.ndarray:
    """True for the points no other (feasible) point dominates. Duplicates of a front point
    are all on the front."""
    pts = np.asarray(points, float)
    ok = np.ones(len(pts), bool) if feasible is None else np.asarray(feasible, bool)
    mask = np.zeros(len(pts), bool)
    cand = pts[ok]
    for i in np.flatnonzero(ok):
        p = pts[i]
        dominated = np.any(np.all(cand <= p, axis=1) & np.any(cand < p, axis=1))
        mask[i] = not dominated
    return mask


def hypervolume_2d(points: np.ndarray, reference: np.ndarray) -> float:
    """Area dominated by `points` (minimise both) and bounded by `reference`: a sweep along
    the first objective, each strip as high as the best second objective so far."""
    ref = np.asarray(reference, float)
    pts = np.asarray(points, float).reshape(-1, 2)
    pts = pts[np.all(pts < ref, axis=1)]
    if not len(pts):
        return 0.0
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]
    right = np.append(pts[1:, 0], ref[0])
    best = np.minimum.accumulate(pts[:, 1])
    return float(np.sum((right - pts[:, 0]) * (ref[1] - best)))


def near_front(accuracy: np.ndarray, costs: np.ndarray, band: float) -> np.ndarray:
    """Mask of the points within `band` of the front in accuracy: no point that costs at most
    as much in every other objective (`costs`, n x m, minimised) is more than `band` more
    accurate. Band 0 gives the front and the points that tie with it."""
    acc = np.asarray(accuracy, float)
    c = np.asarray(costs, float).reshape(len(acc), -1)
    mask = np.ones(len(acc), bool)
    for i in range(len(acc)):
        mask[i] = not np.any(np.all(c <= c[i], axis=1) & (acc > acc[i] + band))
    return mask
