"""The ridge on some columns only, solved in the sample dimension (`hwnas.latency.ridge`),
against the same problem stacked and solved directly."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import lsq_linear

from hwnas.latency import ridge


def problem(n: int, p: int, m: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x_p, x_t = rng.normal(size=(n, p)), rng.poisson(1.0, size=(n, m)).astype(float)
    y = x_p @ rng.normal(size=p) + x_t @ rng.normal(0, 0.3, m) + rng.normal(0, 0.1, n)
    return x_p, x_t, y


def stacked(x_p, x_t, y, lam, lower):
    """min |[P T] w - y|^2 + lam |c|^2, as one bounded least-squares problem."""
    p, m = x_p.shape[1], x_t.shape[1]
    rows = np.vstack(
        [np.hstack([x_p, x_t]), np.hstack([np.zeros((m, p)), np.sqrt(lam) * np.eye(m)])]
    )
    target = np.concatenate([y, np.zeros(m)])
    bounds = (np.concatenate([lower, np.full(m, -np.inf)]), np.inf)
    return lsq_linear(rows, target, bounds=bounds, method="bvls", tol=1e-12).x


@pytest.mark.parametrize(("n", "m"), [(40, 300), (300, 60), (12, 900)])
@pytest.mark.parametrize("lam", [0.01, 1.0, 100.0])
def test_the_same_minimiser_as_the_stacked_problem(n, m, lam):
    x_p, x_t, y = problem(n, 5, m)
    got = ridge.solve(x_p, ridge.Eliminated.of(x_t), y, lam)
    want = stacked(x_p, x_t, y, lam, np.full(5, -np.inf))
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_bounded_weights_stay_non_negative_and_match_the_stacked_problem():
    x_p, x_t, y = problem(80, 6, 200, seed=3)
    y = y - 5 * x_p[:, 0]  # pushes the first weight below zero
    nonneg = np.array([True, True, False, False, False, False])
    got = ridge.solve(x_p, ridge.Eliminated.of(x_t), y, 1.0, nonneg)
    want = stacked(x_p, x_t, y, 1.0, np.where(nonneg, 0.0, -np.inf))
    assert got[0] == pytest.approx(0.0, abs=1e-9) and (got[:2] >= 0).all()
    np.testing.assert_allclose(got, want, atol=1e-6)
