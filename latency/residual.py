"""A local correction of a latency predictor from the subnets it was fitted on.

The linear predictors (`hwnas.latency.predictor`) leave a residual on each measured subnet that
their few features cannot explain: a layer configuration XNNPACK handles unusually, a
resolution whose cache behaviour differs. A search then prefers exactly the subnets the
model underestimates, and their measurements keep disagreeing after a refit (issue 20: the
demo's refitted linear predictor missed its own training subnets by up to 12%).

This is kernel ridge regression (a Gaussian-process posterior mean) on the log residuals
log(measured / predicted), over the standardised physical features: near a measured subnet
the prediction moves towards what was measured, far from every measured subnet the
correction fades to zero and the linear model speaks alone. The length scale and the noise
ratio are chosen by the closed-form leave-one-out error, with "no correction" competing, so
a correction that does not predict subnets it was not fitted on is not kept.
"""

from __future__ import annotations

import numpy as np

LENGTH_SCALES = (0.25, 0.5, 1.0, 2.0)  # times sqrt(number of features)
NOISE_RATIOS = (1e-2, 1e-1, 1.0)  # noise variance over the kernel's variance
MIN_GAIN = 0.95  # a correction is kept when its leave-one-out error is below this share of none


def _kernel(a: np.ndarray, b: np.ndarray, length: float) -> np.ndarray:
    """The Gaussian (RBF) kernel of length scale `length` (scikit-learn's `rbf_kernel`)."""
    from sklearn.metrics.pairwise import rbf_kernel

    return rbf_kernel(a, b, gamma=1.0 / (2 * length**2))


def _standardise(f: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale of each feature: standardised, then stretched by how strongly the
    feature correlates with the residual (an isotropic kernel over a dozen features, most of
    them irrelevant to what the linear model missed, learns almost nothing)."""
    mu, sd = f.mean(0), f.std(0)
    ok = sd > 0
    z = (f[:, ok] - mu[ok]) / sd[ok]
    rc = r - r.mean()
    corr = np.zeros(len(sd))
    corr[ok] = np.abs(z.T @ rc) / (len(r) * max(float(rc.std()), 1e-12))
    relevance = corr / max(float(corr.max()), 1e-12)
    return mu, np.where(relevance > 0.05, sd / np.maximum(relevance, 1e-12), np.inf)


def _loo(k: np.ndarray, r: np.ndarray, noise: float) -> float:
    """Mean absolute leave-one-out residual of kernel ridge with `noise`, in closed form
    (residual_i = alpha_i / inv(K + noise I)_ii: one inverse instead of n fits; scikit-learn
    has this shortcut for linear ridge, `RidgeCV`, not for kernel ridge)."""
    inv = np.linalg.inv(k + noise * np.eye(len(r)))
    return float(np.mean(np.abs((inv @ r) / np.diag(inv))))


def fit_residual(features: np.ndarray, log_resid: np.ndarray) -> dict[str, list[float]]:
    """The correction's coefficients (JSON-ready), or {} when none beats no correction in
    leave-one-out error."""
    if len(log_resid) < 5:
        return {}
    mu, sd = _standardise(features, log_resid)
    z = (features - mu) / sd
    best, best_err = None, MIN_GAIN * float(np.mean(np.abs(log_resid)))
    scale = np.sqrt(max(int(np.isfinite(sd).sum()), 1))
    for ls in LENGTH_SCALES:
        k = _kernel(z, z, ls * scale)
        for noise in NOISE_RATIOS:
            err = _loo(k, log_resid, noise)
            if err < best_err:
                best, best_err = (ls * scale, noise), err
    if best is None:
        return {}
    length, noise = best
    alpha = _kernel_ridge(z, log_resid, length, noise)
    return {
        "resid_mu": mu.tolist(),
        "resid_sd": np.where(np.isfinite(sd), sd, 0.0).tolist(),  # 0: the feature is ignored
        "resid_x": z.ravel().tolist(),
        "resid_alpha": alpha.tolist(),
        "resid_length": [float(length)],
    }


def _kernel_ridge(z: np.ndarray, r: np.ndarray, length: float, noise: float) -> np.ndarray:
    """The dual weights of scikit-learn's `KernelRidge` on the Gaussian kernel: a prediction
    is `kernel(z_new, z) @ weights` (stored as JSON, `correction`)."""
    from sklearn.kernel_ridge import KernelRidge

    model = KernelRidge(alpha=noise, kernel="precomputed").fit(_kernel(z, z, length), r)
    return np.asarray(model.dual_coef_, np.float64)


def correction(coef: dict[str, np.ndarray], features: np.ndarray) -> np.ndarray:
    """The factor each prediction is multiplied by (1 where no correction is stored)."""
    if "resid_alpha" not in coef:
        return np.ones(len(features))
    x = coef["resid_x"].reshape(len(coef["resid_alpha"]), -1)
    sd = coef["resid_sd"]
    z = np.where(sd > 0, (features - coef["resid_mu"]) / np.where(sd > 0, sd, 1.0), 0.0)
    return np.exp(_kernel(z, x, float(coef["resid_length"][0])) @ coef["resid_alpha"])
