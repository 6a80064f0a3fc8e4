"""Optuna samplers by name, each honouring the hard budgets through `constraints_func`."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import optuna

from search.output import UserError

SAMPLERS = ("tpe", "nsga2", "gp", "random")


def make_sampler(
    name: str, seed: int | None, constraints: Callable | None
) -> optuna.samplers.BaseSampler:
    """`tpe` (multivariate TPE, the default), `nsga2`, `gp` (needs PyTorch) or `random`.
    Random search ignores constraints while sampling; infeasible trials are still marked."""
    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, constraints_func=constraints
        )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, constraints_func=constraints)
    if name == "gp":
        if importlib.util.find_spec("torch") is None:
            raise UserError(
                "the gp sampler needs PyTorch, which is not installed; run `pip install torch` "
                "or choose --sampler tpe, nsga2 or random"
            )
        return optuna.samplers.GPSampler(seed=seed, constraints_func=constraints)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
