"""Pareto fronts and 2-D hypervolume on hand-checked points."""

from __future__ import annotations

import numpy as np
import pytest

from hwnas.search.pareto import hypervolume_2d, pareto_mask


def test_front_of_a_small_set():
    pts = np.array([[1, 5], [2, 2], [3, 1], [3, 3], [2, 2], [5, 5]])
    assert pareto_mask(pts).tolist() == [True, True, True, False, True, False]


def test_infeasible_points_are_off_the_front_and_do_not_dominate():
    pts = np.array([[1, 1], [2, 2], [3, 0]])
    feasible = np.array([False, True, True])
    assert pareto_mask(pts, feasible).tolist() == [False, True, True]


@pytest.mark.parametrize(
    "points, area",
    [
        ([[1, 1]], 9.0),  # one box up to the reference (4, 4)
        ([[1, 3], [3, 1]], 5.0),  # two boxes of 3x1 and 1x3 overlapping in 1x1
        ([[1, 3], [3, 1], [2, 3.5]], 5.0),  # a dominated point adds nothing
        ([[5, 1]], 0.0),  # beyond the reference
    ],
)
def test_hypervolume_2d(points, area):
    assert hypervolume_2d(np.array(points, float), np.array([4.0, 4.0])) == pytest.approx(area)


def test_hypervolume_grows_with_a_new_front_point():
    ref = np.array([1.0, 1.0])
    rng = np.random.default_rng(0)
    pts = rng.random((30, 2))
    hv = hypervolume_2d(pts, ref)
    better = np.vstack([pts, pts[pareto_mask(pts)].min(axis=0) * 0.5])
    assert hypervolume_2d(better, ref) > hv
