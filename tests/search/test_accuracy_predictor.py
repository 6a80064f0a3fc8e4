"""The accuracy predictor: fitted models rank held-out subnets, survive JSON, refuse another
space."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hwnas.latency.metrics import kendall
from hwnas.search import accuracy_predictor as ap
from hwnas.supernet.space import SearchSpace, load_space

TINY = Path(__file__).parent.parent / "data" / "tiny_space.json"


def _additive(space: SearchSpace, n: int, seed: int):
    """Subnets and an accuracy that is a sum of per-choice effects plus a little noise."""
    rng = np.random.default_rng(seed)
    subnets = [space.sample_sized(rng) for _ in range(n)]
    x = ap.encode(space, subnets)
    effect = np.random.default_rng(99).normal(size=x.shape[1])
    y = 0.8 + 0.01 * (x @ effect) + 0.001 * rng.normal(size=n)
    return subnets, x, y


def test_ridge_ranks_held_out_subnets_of_an_additive_accuracy():
    space = load_space("digits")
    subnets, x, y = _additive(space, 300, 0)
    p = ap.fit("ridge", space, x[:200], y[:200])
    assert kendall(p.predict(subnets[200:]), y[200:]) > 0.9
    assert p.predict(subnets[200:]) == pytest.approx(p.predict_encoded(x[200:]))


def test_per_resolution_effects_and_the_mlp_learn_what_plain_ridge_cannot(monkeypatch):
    """An interaction of resolution and the first slot's kernel (`ridge-res` has it), and one
    of two slots' kernels (only the MLP has it)."""
    monkeypatch.setattr(ap, "MLP_HIDDEN", (32, 32))
    monkeypatch.setattr(ap, "MLP_STEPS", 400)
    space = SearchSpace.from_file(TINY)
    rng = np.random.default_rng(1)
    subnets = [space.sample(rng) for _ in range(240)]
    big = np.asarray([s.resolution == space.resolutions[-1] for s in subnets])
    k0, k1 = (np.asarray([s.kernels[i] == space.kernels[-1] for s in subnets]) for i in (0, 1))
    x = ap.encode(space, subnets)
    noise = 0.001 * rng.normal(size=len(subnets))
    cv = ap.cross_validate(space, x, 0.5 + 0.1 * (big ^ k0) + noise)
    assert cv["ridge-res"]["rmse"] < 0.2 * cv["ridge"]["rmse"]
    best, cv = ap.fit_best(space, x, 0.5 + 0.1 * (k0 ^ k1) + noise)
    assert cv["mlp"]["rmse"] < 0.5 * min(cv["ridge"]["rmse"], cv["ridge-res"]["rmse"])
    assert best.kind == "mlp"


def test_a_predictor_survives_json_exactly_and_refuses_another_space():
    space = load_space("digits")
    subnets, x, y = _additive(space, 60, 2)
    p = ap.fit("ridge", space, x, y)
    again = ap.AccuracyPredictor.from_dict(json.loads(json.dumps(p.to_dict())))
    assert np.array_equal(again.predict(subnets), p.predict(subnets))
    other = p.to_dict() | {"space": SearchSpace.from_file(TINY).to_dict()}
    with pytest.raises(ap.AccuracyPredictorError, match="does not fit its space"):
        ap.AccuracyPredictor.from_dict(other)
    with pytest.raises(ap.AccuracyPredictorError, match="unreadable"):
        ap.AccuracyPredictor.from_dict({"kind": "ridge"})


def test_too_few_subnets_is_an_error():
    space = load_space("digits")
    _, x, y = _additive(space, 6, 3)
    with pytest.raises(ValueError, match="at least 10"):
        ap.fit_best(space, x, y)
