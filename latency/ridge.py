"""Least squares with a ridge penalty on some columns only, many penalties at once.

The main latency model (`hwnas.latency.predictor`) has a few unpenalised columns P (physical
costs, some kept >= 0) and many penalised ones T (the layer table: 360 columns for the
`ofa-mbv3` preset, 2,250 with Once-for-All's 25 resolutions). Solving the normal equations in
the table's dimension for every ridge strength and fold cost minutes at 25 resolutions. Here
the table is eliminated in the sample dimension instead: for a penalty `lam` on T,

    min_{b,c} |P b + T c - y|^2 + lam |c|^2  =  min_b (y - P b)' M (y - P b),
    M = lam (K + lam I)^-1,   K = T T',   c = T' (K + lam I)^-1 (y - P b),

so one thin SVD of T (K's eigenvectors U, with eigenvalues s^2 there and 0 beside: n x min(n,
m), never n x n) serves every `lam`, and what is left is a least-squares problem in P's few
columns (bounded where weights must stay >= 0: `scipy.optimize.lsq_linear`). Exact, not an
approximation: the same minimiser as the stacked ridge problem.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Eliminated:
    """The penalised columns T of a problem, by their thin SVD T = U diag(s) V' (U: n x r, r =
    min(n, m)): K = T T' has the eigenvalues s^2 on U's columns and 0 on their complement."""

    u: np.ndarray  # (n, r)
    s: np.ndarray  # (r,)
    vt: np.ndarray  # (r, m)

    @classmethod
    def of(cls, t: np.ndarray) -> Eliminated:
        if t.shape[1] == 0:
            return cls(np.zeros((t.shape[0], 0)), np.zeros(0), np.zeros((0, 0)))
        u, s, vt = np.linalg.svd(t, full_matrices=False)
        return cls(u, s, vt)


def solve(
    p: np.ndarray,
    elim: Eliminated,
    y: np.ndarray,
    lam: float,
    nonneg: np.ndarray | None = None,
) -> np.ndarray:
    """argmin |P b + T c - y|^2 + lam |c|^2 over (b, c), with b[nonneg] >= 0; returns [b, c].
    Rows are whatever the caller weighted them to be."""
    s2 = elim.s**2
    shrink = 1.0 - np.sqrt(lam / (s2 + lam))  # M^(1/2) = I - U diag(shrink) U'

    def half(x: np.ndarray) -> np.ndarray:
        ux = elim.u.T @ x
        return x - elim.u @ (shrink[:, None] * ux if x.ndim == 2 else shrink * ux)

    b = _bounded_lstsq(half(p), half(y), nonneg)
    resid = y - p @ b
    c = elim.vt.T @ (elim.s / (s2 + lam) * (elim.u.T @ resid))
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
