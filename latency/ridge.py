"""Least squares with a ridge penalty on some columns only, many penalties at once.

The main latency model (`hwnas.latency.predictor`) has a few unpenalised columns P (physical
costs, some kept >= 0) and many penalised ones T (the layer table: 360 columns for the
`ofa-mbv3` preset, 2,250 with Once-for-All's 25 resolutions). Solving the normal equations in
the table's dimension for every ridge strength and fold cost minutes at 25 resolutions. Here
the table is eliminated in the sample dimension instead: for a penalty `lam` on T,

    min_{b,c} |P b + T c - y|^2 + lam |c|^2  =  min_b (y - P b)' M (y - P b),
    M = lam (K + lam I)^-1,   K = T T',   c = T' (K + lam I)^-1 (y - P b),

so one eigendecomposition of the n x n kernel K serves every `lam`, and what is left is a
least-squares problem in P's few columns (bounded where weights must stay >= 0:
`scipy.optimize.lsq_linear`). Exact, not an approximation: the same minimiser as the
stacked ridge problem.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Eliminated:
    """The penalised columns T of a problem, eliminated: K = T T' = U diag(s) U'."""

    t: np.ndarray  # (n, m)
    u: np.ndarray  # (n, n)
    s: np.ndarray  # (n,)

    @classmethod
    def of(cls, t: np.ndarray) -> Eliminated:
        if t.shape[1] == 0:
            n = t.shape[0]
            return cls(t, np.eye(n), np.zeros(n))
        s, u = np.linalg.eigh(t @ t.T)
        return cls(t, u, np.maximum(s, 0.0))


def solve(
    p: np.ndarray,
    elim: Eliminated,
    y: np.ndarray,
    lam: float,
    nonneg: np.ndarray | None = None,
) -> np.ndarray:
    """argmin |P b + T c - y|^2 + lam |c|^2 over (b, c), with b[nonneg] >= 0; returns [b, c].
    Rows are whatever the caller weighted them to be."""
    root = np.sqrt(lam / (elim.s + lam))  # M^(1/2) = U diag(root) U'
    pu, yu = elim.u.T @ p, elim.u.T @ y
    a, rhs = pu * root[:, None], yu * root
    b = _bounded_lstsq(a, rhs, nonneg)
    resid = yu - pu @ b
    c = elim.t.T @ (elim.u @ (resid / (elim.s + lam)))
    return np.concatenate([b, c])


def _bounded_lstsq(a: np.ndarray, rhs: np.ndarray, nonneg: np.ndarray | None) -> np.ndarray:
    if a.shape[1] == 0:
        return np.zeros(0)
    b, *_ = np.linalg.lstsq(a, rhs, rcond=None)
    if nonneg is None or not nonneg.any() or (b[nonneg] >= 0).all():
        return b
    lower = np.where(nonneg, 0.0, -np.inf)
    from scipy.optimize import lsq_linear

    return lsq_linear(a, rhs, bounds=(lower, np.inf), method="bvls").x
