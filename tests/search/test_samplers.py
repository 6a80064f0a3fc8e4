"""Samplers by name."""

from __future__ import annotations

import importlib.util

import optuna
import pytest

from hwnas.search.output import UserError
from hwnas.search.samplers import make_sampler


@pytest.mark.parametrize(
    "name, cls",
    [
        ("tpe", optuna.samplers.TPESampler),
        ("nsga2", optuna.samplers.NSGAIISampler),
        ("random", optuna.samplers.RandomSampler),
    ],
)
def test_named_samplers(name, cls):
    assert isinstance(make_sampler(name, 0), cls)


def test_gp_needs_torch_and_says_so():
    if importlib.util.find_spec("torch") is None:
        with pytest.raises(UserError, match="needs PyTorch"):
            make_sampler("gp", 0)
    else:
        assert isinstance(make_sampler("gp", 0), optuna.samplers.GPSampler)


def test_unknown_sampler():
    with pytest.raises(UserError, match="unknown sampler"):
        make_sampler("annealing", 0)
