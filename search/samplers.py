"""Optuna samplers by name. Each honours the hard budgets through the constraints every trial
stores (`Trial.set_constraint`, in `search/objective.py`): Optuna 5's samplers read them from the
trials, and its `constraints_func` argument is deprecated."""

from __future__ import annotations

import importlib.util

import optuna

from hwnas.search.output import UserError
from hwnas.search.tpe import TPESampler

SAMPLERS = ("tpe", "nsga2", "gp", "random")


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    """`tpe` (multivariate TPE, the default), `nsga2`, `gp` (needs PyTorch) or `random`.
    Random search ignores constraints while sampling; infeasible trials are still marked."""
    if name == "tpe":
        return TPESampler(seed=seed, multivariate=True)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "gp":
        if importlib.util.find_spec("torch") is None:
            raise UserError(
                "the gp sampler needs PyTorch, which is not installed; run `pip install torch` "
                "or choose --sampler tpe, nsga2 or random"
            )
        return optuna.samplers.GPSampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise UserError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
