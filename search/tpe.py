"""Optuna's multivariate TPE, with each finished trial's parameters kept in TPE's internal form.

For every new trial TPE converts the parameters of every past trial again, twice (the better
and the worse group): with the 46 categorical parameters of a search trial that is
`CategoricalDistribution.to_internal_repr` (a `list.index`) 46 x n times, about 6 ms of a
16 ms trial at n = 300. A finished trial's parameters never change, so here each one is
converted once; running trials (whose relative parameters may still be written) go through
Optuna's own conversion. Same samples, same order: `tests/search/test_tpe.py` runs a search
both ways.

`_get_internal_repr` and `_get_params` are Optuna internals: `tests/search/test_tpe.py` checks
their signatures, so a new Optuna that changes them fails there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial


class TPESampler(optuna.samplers.TPESampler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._space: tuple | None = None  # the search space the kept rows are of
        self._rows: dict[int, tuple | None] = {}  # trial id -> its internal values, or None

    def _get_internal_repr(
        self, trials: list[FrozenTrial], search_space: dict[str, BaseDistribution], study: Any
    ) -> dict[str, np.ndarray]:
        space = tuple(search_space.items())
        if space != self._space:
            self._space, self._rows = space, {}
        rows = []
        for trial in trials:
            if trial._trial_id in self._rows:
                row = self._rows[trial._trial_id]
            else:
                row = self._row(trial, search_space, study)
                if trial.state.is_finished():
                    self._rows[trial._trial_id] = row
            if row is not None:
                rows.append(row)
        columns = zip(*rows, strict=True) if rows else ([] for _ in search_space)
        return {k: np.asarray(list(col)) for k, col in zip(search_space, columns, strict=True)}

    def _row(
        self, trial: FrozenTrial, search_space: dict[str, BaseDistribution], study: Any
    ) -> tuple | None:
        """The trial's values in `search_space`'s order, as Optuna converts them; None where
        the trial lacks a parameter of it (Optuna leaves such a trial out)."""
        params = self._get_params(trial, study)
        if not search_space.keys() <= params.keys():
            return None
        return tuple(d.to_internal_repr(params[k]) for k, d in search_space.items())
