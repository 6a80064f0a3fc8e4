"""The model a target gets (`hwnas.latency.choice`): chosen by validation among the main model,
single features and other targets' predictors, and folded into one `main` predictor. The
latencies are synthetic with a known form, so what the choice must find is known."""

from __future__ import annotations

import numpy as np
import pytest

from hwnas.latency.choice import choose
from hwnas.latency.features import SpaceTables, macs, physical, physical_columns
from hwnas.latency.metrics import kendall
from hwnas.latency.predictor import fit_main
from hwnas.supernet.space import load_space


@pytest.fixture(scope="module")
def setup():
    space = load_space("ofa-mbv3-r25")
    t = SpaceTables(space)
    rng = np.random.default_rng(0)
    subnets = [space.sample(rng) for _ in range(400)]
    enc = t.encode(subnets)
    noise = np.exp(rng.normal(0, 0.01, len(subnets)))
    return space, t, enc, noise


def test_a_dispatch_bound_target_gets_a_model_that_ranks_as_the_layer_count(setup):
    """Latency = a fixed cost per layer: a few measurements teach the main model less than
    the layer count alone knows."""
    space, t, enc, noise = setup
    layers = physical(t, enc)[:, physical_columns(t)["layers"]]
    y = (0.2 + 0.05 * layers + 1e-5 * macs(t, enc)) * noise
    train, test = np.arange(20), np.arange(100, 400)
    c = choose(space, t, enc.take(train), y[train])
    pred = c.predictor.predict_encoded(t, enc.take(test))
    assert kendall(pred, y[test]) >= kendall(layers[test], y[test]) - 0.01
    assert np.median(np.abs(pred / y[test] - 1)) < 0.02
    assert set(c.errors) >= {"alone", "feature:layers", "feature:macs", "feature:volume"}


def test_a_new_target_is_learnt_from_another_from_ten_measurements(setup):
    """The target is a rescaled source: from 10 measurements the source's model, rescaled,
    predicts it; the chosen predictor is one `main` predictor with the source folded in."""
    space, t, enc, noise = setup
    source_y = (0.5 + 0.01 * macs(t, enc) + 0.03 * physical(t, enc)[:, 0]) * noise
    source = fit_main(space, t, enc.take(np.arange(200)), source_y[:200])
    y = 0.3 + 1.7 * source.predict_encoded(t, enc)
    train, test = np.arange(200, 210), np.arange(210, 400)
    alone = choose(space, t, enc.take(train), y[train])
    c = choose(space, t, enc.take(train), y[train], sources={"other": source})
    assert c.model in ("source:other", "sources", "alone+sources")
    pred = c.predictor.predict_encoded(t, enc.take(test))
    np.testing.assert_allclose(pred, y[test], rtol=2e-3)
    assert c.predictor.kind == "main" and set(c.predictor.coef) == {"physical", "table"}
    alone_err = np.abs(alone.predictor.predict_encoded(t, enc.take(test)) / y[test] - 1)
    assert np.median(alone_err) > 5 * np.median(np.abs(pred / y[test] - 1))


def test_with_many_measurements_a_target_is_fitted_alone_or_by_a_single_feature(setup):
    space, t, enc, noise = setup
    y = (0.5 + 0.01 * macs(t, enc)) * noise
    other = fit_main(space, t, enc.take(np.arange(100)), 2 * y[:100])
    c = choose(space, t, enc.take(np.arange(100, 400)), y[100:], sources={"other": other})
    assert not any("source" in name for name in c.errors)
