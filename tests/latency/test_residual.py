"""The local correction of a latency predictor (`hwnas.latency.residual`)."""

from __future__ import annotations

import json

import numpy as np
from test_predictor import sample, space, synthetic_latency  # noqa: F401  (fixtures)

from hwnas.latency.features import SpaceTables, physical
from hwnas.latency.predictor import Predictor, fit_main
from hwnas.latency.residual import fit_residual


def bumped(space, subnets):  # noqa: F811
    """A device the linear model cannot express: the more activations a subnet moves, the
    slower each of its layers (caches overflow)."""
    y, _ = synthetic_latency(space, subnets, noise=0.005)
    t = SpaceTables(space)
    volume = physical(t, t.encode(subnets))[:, -len(space.resolutions) - 2]
    return y * (volume / volume.mean()) ** 0.5


def test_the_correction_learns_what_the_linear_model_misses(space, sample):  # noqa: F811
    y = bumped(space, sample)
    t = SpaceTables(space)
    enc = t.encode(sample[:300])
    plain = fit_main(space, t, enc, y[:300])
    corrected = plain.with_residual(t, enc, y[:300])
    assert "resid_alpha" in corrected.coef
    err = lambda p, lo, hi: np.abs(p.predict(sample[lo:hi]) / y[lo:hi] - 1)  # noqa: E731
    assert err(corrected, 300, 400).mean() < 0.95 * err(plain, 300, 400).mean()  # held out
    assert err(corrected, 0, 300).max() < err(plain, 0, 300).max()  # its own subnets
    again = Predictor.from_dict(json.loads(json.dumps(corrected.to_dict())))
    np.testing.assert_allclose(again.predict(sample), corrected.predict(sample), rtol=1e-12)
    refitted = corrected.with_residual(t, enc, y[:300])  # replaces, does not stack
    np.testing.assert_allclose(refitted.predict(sample), corrected.predict(sample), rtol=1e-9)


def test_residuals_that_are_only_noise_get_no_correction():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(80, 6))
    assert fit_residual(features, 0.05 * rng.normal(size=80)) == {}
    assert fit_residual(features[:4], np.ones(4)) == {}  # too few to judge
