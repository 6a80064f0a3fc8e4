"""Which latency model a target gets: chosen by cross-validation on its own measurements, among
the main model, single features, and models built on other targets' predictors.

- `alone`: the main model (`hwnas.latency.predictor.fit_main`) on the target's measurements.
- `feature:NAME`: latency = a + b * one feature (layers, MACs, activation volume). Where a
  device is dispatch-bound (fixed costs per layer dominate: a small model, a GPU at batch 1) a
  main model fitted on few measurements can rank worse than the layer count alone; these keep
  the choice from ever doing worse than the best of them by more than the validation's noise.
- `source:KEY`: a + b * another target's prediction (HELP's idea, NeurIPS'21: a new device
  is mostly a rescaled known one); `sources`: a + a non-negative mix of every source;
  `alone+sources`: the main model with the sources' predictions among its features.

Every candidate is linear in the physical features and the layer table, so the one chosen is
stored as a `main` predictor (sources folded in): prediction stays a gather and a sum, and
a predictor built from other targets needs nothing of theirs at prediction time.

The validation: leave-one-out up to 25 measurements, five folds above; the error is the
(weighted) mean relative error, what a prediction within +-10% is judged by. The table's
ridge strength is chosen once on all the measurements and kept in the folds (the choice
between models is what is validated).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hwnas.latency.features import (
    Encoded,
    SpaceTables,
    macs_weights,
    n_physical,
    physical,
    physical_columns,
    table_index,
    table_size,
)
from hwnas.latency.metrics import relative_error
from hwnas.latency.predictor import MIN_FIT, Predictor, _weighted_lstsq, fit_main, main_ridge
from hwnas.supernet.space import SearchSpace

FEATURES = ("layers", "macs", "volume")
LOO_UP_TO = 25  # leave-one-out up to this many measurements, five folds above
MIN_ALONE = MIN_FIT  # measurements the main model needs
SOURCES_BELOW = 100  # from this many measurements on, a target is fitted on its own alone


@dataclass(frozen=True)
class Candidate:
    name: str
    min_n: int
    fit: Callable[[Encoded, np.ndarray, np.ndarray], Predictor]  # enc, y, weight


@dataclass(frozen=True)
class Choice:
    """The model chosen, its predictor (fitted on every measurement given), and every
    candidate's validation error (mean relative error; NaN: too few measurements for it)."""

    model: str
    predictor: Predictor
    errors: Mapping[str, float]


def _feature_weights(t: SpaceTables, name: str) -> np.ndarray:
    """Physical weights that give one feature."""
    if name == "macs":
        return macs_weights(t)
    w = np.zeros(n_physical(t))
    w[physical_columns(t)[name]] = 1.0
    return w


def _ones(t: SpaceTables) -> np.ndarray:
    """Physical weights that add 1 to every subnet (one per resolution one-hot)."""
    w = np.zeros(n_physical(t))
    w[len(physical_columns(t)) :] = 1.0
    return w


def feature_model(
    space: SearchSpace, t: SpaceTables, name: str
) -> Callable[[Encoded, np.ndarray, np.ndarray], Predictor]:
    """The fit of latency = a + b * feature `name` (one of `FEATURES`)."""
    return _affine(space, t, [(_feature_weights(t, name), np.zeros(table_size(t)))])


def _affine(
    space: SearchSpace, t: SpaceTables, parts: Sequence[tuple[np.ndarray, np.ndarray]]
) -> Callable[[Encoded, np.ndarray, np.ndarray], Predictor]:
    """A fit of latency = a + sum_j b_j * model_j (b_j >= 0), each model_j linear as physical
    weights and a table; returned folded into one `main` predictor."""
    size = len(parts[0][1])

    def fit(enc: Encoded, y: np.ndarray, weight: np.ndarray) -> Predictor:
        p = physical(t, enc)
        idx, active = table_index(t, enc)
        cols = [p @ w + (tab[idx] * active).sum(1) for w, tab in parts]
        x = np.stack([np.ones(len(y)), *cols], 1)
        nonneg = np.array([False] + [True] * len(parts))
        b = _weighted_lstsq(x, y, np.zeros(x.shape[1]), nonneg, weight)
        phys = b[0] * _ones(t) + sum(bj * w for bj, (w, _) in zip(b[1:], parts, strict=True))
        table = sum((bj * tab for bj, (_, tab) in zip(b[1:], parts, strict=True)), np.zeros(size))
        return Predictor("main", space, {"physical": list(phys), "table": list(table)})

    return fit


def candidates(
    space: SearchSpace,
    t: SpaceTables,
    lut: np.ndarray | None,
    sources: Mapping[str, Predictor],
    lam: float,
) -> list[Candidate]:
    """Every model a target with these `sources` (other targets' main predictors) may get."""

    def alone(enc: Encoded, y: np.ndarray, weight: np.ndarray) -> Predictor:
        return fit_main(space, t, enc, y, lut, weight, lam=lam)

    out = [Candidate("alone", MIN_ALONE, alone)]
    for name in FEATURES:
        out.append(Candidate(f"feature:{name}", 3, feature_model(space, t, name)))
    parts = {k: (np.asarray(p.coef["physical"]), np.asarray(p.coef["table"]))
             for k, p in sources.items()}  # fmt: skip
    for key, part in parts.items():
        out.append(Candidate(f"source:{key}", 3, _affine(space, t, [part])))
    if len(parts) > 1:
        out.append(Candidate("sources", len(parts) + 2, _affine(space, t, list(parts.values()))))
    if parts:
        extra = list(sources.values())

        def both(enc: Encoded, y: np.ndarray, weight: np.ndarray) -> Predictor:
            return fit_main(space, t, enc, y, lut, weight, extra, lam=lam)

        out.append(Candidate("alone+sources", MIN_ALONE, both))
    return out


def _folds(n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    order = np.random.default_rng((seed, 11)).permutation(n)
    k = n if n <= LOO_UP_TO else 5
    parts = np.array_split(order, k)
    return [(np.concatenate(parts[:i] + parts[i + 1 :]), p) for i, p in enumerate(parts)]


def choose(
    space: SearchSpace,
    t: SpaceTables,
    enc: Encoded,
    y: np.ndarray,
    lut: np.ndarray | None = None,
    sources: Mapping[str, Predictor] | None = None,
    weight: np.ndarray | None = None,
    seed: int = 0,
) -> Choice:
    """The candidate with the lowest validation error, fitted on every measurement. Sources
    are considered below `SOURCES_BELOW` measurements only: with enough of its own, a
    target is fitted alone."""
    n = len(y)
    weight = np.ones(n) if weight is None else weight
    sources = dict(sources or {}) if n < SOURCES_BELOW else {}
    lam = main_ridge(t, enc, y, lut, weight)
    cands = candidates(space, t, lut, sources, lam)
    folds = _folds(n, seed)
    errors: dict[str, float] = {}
    for c in cands:
        if n - max(len(test) for _, test in folds) < c.min_n:
            errors[c.name] = float("nan")
            continue
        err = 0.0
        for train, test in folds:
            p = c.fit(enc.take(train), y[train], weight[train])
            pred = p.predict_encoded(t, enc.take(test))
            err += float(np.sum(weight[test] * relative_error(pred, y[test])))
        errors[c.name] = err / float(weight.sum())
    valid = {k: v for k, v in errors.items() if np.isfinite(v)}
    if not valid:
        raise ValueError(f"{n} measurements are too few to choose a latency model")
    best = min(valid, key=valid.__getitem__)
    chosen = next(c for c in cands if c.name == best)
    return Choice(best, chosen.fit(enc, y, weight), errors)
