"""Latency predictors: the main model and two baselines, all linear in vectorised features,
stored as JSON (never pickled), predicting ~10^6 subnets per second in numpy.

- `main`: a physical model (MACs per operation kind, layer count, activation volume,
  per-resolution overhead) plus, where the layers were measured alone, the lookup-table sum
  (one feature per layer kind given enough subnets, one in all otherwise), plus a table of
  in-context corrections (one weight per layer kind, resolution, kernel and expand). It is
  fitted on whole-subnet measurements by least squares on the *relative* error; the
  correction table is ridge-regularised, with the strength chosen by cross-validation on the
  training split (a strong ridge leaves the physical + LUT model, a weak one learns
  interactions the layers alone do not show). Stored folded: per table column one weight
  (LUT coefficient x measured layer latency + correction), so prediction is a gather and a
  sum.
- `macs`: latency = a + b * MACs (the FLOPs proxy), fitted the same way.
- `lut`: Once-for-All/FBNet style, the sum of each layer's latency measured alone (block
  measurements), plus a per-resolution offset (stem, head, fixed costs) fitted on the training
  split.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hwnas.latency import ridge
from hwnas.latency.features import (
    Encoded,
    SpaceTables,
    macs,
    n_physical,
    physical,
    table,
    table_index,
    table_size,
)
from hwnas.latency.metrics import kendall, relative_error, within
from hwnas.latency.residual import correction, fit_residual
from hwnas.supernet.space import SearchSpace, Subnet

PREDICTOR_KINDS = ("main", "macs", "lut")
RANGE_SLACK = 1e-6  # relative: a feature equal to a measured extreme is inside the range
MIN_FIT = 8  # measurements the main model needs (fewer than its unpenalised weights: the
# smallest-norm solution, kept >= 0; validation decides whether it beats a simpler model)
RIDGE_GRID = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4)
RIDGE_CV_FROM = 25  # measurements from which the table's ridge is cross-validated


class PredictorError(ValueError):
    """Not enough data, or a stored predictor that does not fit the space."""


@dataclass(frozen=True)
class Predictor:
    kind: str
    space: SearchSpace
    coef: dict[str, list[float]] = field(default_factory=dict)

    def predict_encoded(self, t: SpaceTables, enc: Encoded) -> np.ndarray:
        """Predicted ms, never below the stored `floor` (a linear model extrapolated past its
        training data can reach zero or below; a latency cannot), times the local correction
        where one is stored (`with_residual`)."""
        c = {k: np.asarray(v) for k, v in self.coef.items()}
        out = self._floored(t, enc, c)
        return out * correction(c, physical(t, enc)) if "resid_alpha" in c else out

    def _floored(self, t: SpaceTables, enc: Encoded, c: dict) -> np.ndarray:
        raw = self._linear(t, enc, c)
        return np.maximum(raw, c["floor"][0]) if "floor" in c else raw

    def with_residual(self, t: SpaceTables, enc: Encoded, y: np.ndarray) -> Predictor:
        """The predictor with a local correction learnt from its residuals on the measured
        subnets `enc` (`hwnas.latency.residual`); any earlier correction is replaced."""
        c = {k: np.asarray(v) for k, v in self.coef.items() if not k.startswith("resid_")}
        base = self._floored(t, enc, c)
        extra = fit_residual(physical(t, enc), np.log(y / base))
        return dataclasses.replace(self, coef={k: v.tolist() for k, v in c.items()} | extra)

    def extrapolated_encoded(self, t: SpaceTables, enc: Encoded) -> np.ndarray:
        """True where a prediction leaves what the predictor was fitted on: the linear model
        falls below the floor (the floor then hides how fast it thinks the subnet is), or a
        physical feature (layers, MACs per operation kind, activation volume, resolution) lies
        outside the range of the measured subnets (`with_range`). Predictors stored before
        the range was kept are checked against their floor only."""
        c = {k: np.asarray(v) for k, v in self.coef.items()}
        out = np.zeros(len(enc.r), bool)
        if "floor" in c:
            out |= self._linear(t, enc, c) < c["floor"][0]
        if "feature_lo" in c:
            f = physical(t, enc)
            slack = RANGE_SLACK * np.maximum(np.abs(c["feature_hi"]), 1e-12)
            out |= ((f < c["feature_lo"] - slack) | (f > c["feature_hi"] + slack)).any(1)
        return out

    def extrapolated(self, subnets: Sequence[Subnet]) -> np.ndarray:
        t = SpaceTables(self.space)
        return self.extrapolated_encoded(t, t.encode(subnets))

    def with_range(self, t: SpaceTables, enc: Encoded) -> Predictor:
        """The predictor with the range of physical features of the subnets it was fitted on."""
        f = physical(t, enc)
        lo, hi = f.min(0).tolist(), f.max(0).tolist()
        return dataclasses.replace(self, coef={**self.coef, "feature_lo": lo, "feature_hi": hi})

    def _linear(self, t: SpaceTables, enc: Encoded, c: dict) -> np.ndarray:
        if self.kind == "macs":
            return c["ab"][0] + c["ab"][1] * macs(t, enc)
        idx, active = table_index(t, enc)
        per_layer = (c["table"][idx] * active).sum(1)
        if self.kind == "lut":
            return per_layer + c["offset"][enc.r]
        return physical(t, enc) @ c["physical"] + per_layer

    def linear_encoded(self, t: SpaceTables, enc: Encoded) -> np.ndarray:
        """The linear model alone (no floor, no local correction): what folds into another
        target's predictor (`fit_main`'s `extra`)."""
        return self._linear(t, enc, {k: np.asarray(v) for k, v in self.coef.items()})

    def with_floor(self, ms: float) -> Predictor:
        return dataclasses.replace(self, coef={**self.coef, "floor": [float(ms)]})

    def predict(self, subnets: Sequence[Subnet], tables: SpaceTables | None = None) -> np.ndarray:
        t = tables or SpaceTables(self.space)
        return self.predict_encoded(t, t.encode(subnets))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "space": self.space.to_dict(), "coef": self.coef}

    @classmethod
    def from_dict(cls, d: dict) -> Predictor:
        try:
            kind, space = d["kind"], SearchSpace.from_dict(d["space"])
            coef = {k: [float(x) for x in v] for k, v in d["coef"].items()}
        except (KeyError, TypeError, ValueError) as e:
            raise PredictorError(f"stored predictor is malformed: {e}") from None
        if kind not in PREDICTOR_KINDS:
            raise PredictorError(f"stored predictor has unknown kind {kind!r}")
        return cls(kind, space, coef)


def _weighted_lstsq(
    x: np.ndarray,
    y: np.ndarray,
    penalty: np.ndarray,
    nonneg: np.ndarray | None = None,
    weight: np.ndarray | None = None,
) -> np.ndarray:
    """argmin_w sum(weight * ((x w - y) / y)^2) + sum(penalty * w^2), with the weights where
    `nonneg` is True kept >= 0 (costs that cannot be negative: an unconstrained fit on few
    subnets gives some a negative weight, and a search then finds subnets predicted impossibly
    fast). `weight` (default 1 per subnet) is how much each measurement counts."""
    root = np.ones_like(y) if weight is None else np.sqrt(weight)
    xw = x / y[:, None] * root[:, None]
    a = xw.T @ xw + np.diag(penalty)
    w = np.linalg.solve(a + 1e-9 * np.eye(len(a)), xw.T @ root)
    if nonneg is None or (w[nonneg] >= 0).all():
        return w
    rows = np.vstack([xw, np.diag(np.sqrt(penalty + 1e-9))])
    target = np.concatenate([root, np.zeros(len(penalty))])
    lower = np.where(nonneg, 0.0, -np.inf)
    from scipy.optimize import lsq_linear

    return lsq_linear(rows, target, bounds=(lower, np.inf), method="bvls").x


def fit_macs(space: SearchSpace, t: SpaceTables, enc: Encoded, y: np.ndarray) -> Predictor:
    x = np.stack([np.ones(len(y)), macs(t, enc)], 1)
    ab = _weighted_lstsq(x, y, np.zeros(2))
    return Predictor("macs", space, {"ab": ab.tolist()})


def fit_lut(
    space: SearchSpace, t: SpaceTables, enc: Encoded, y: np.ndarray, lut: np.ndarray
) -> Predictor:
    """`lut`: per table column, the latency of that layer measured alone (NaN where missing)."""
    if np.isnan(lut).any():
        raise PredictorError(f"the lookup table lacks {int(np.isnan(lut).sum())} layer entries")
    idx, active = table_index(t, enc)
    residual = y - (lut[idx] * active).sum(1)
    offset = [
        float(np.median(residual[enc.r == i])) if (enc.r == i).any() else 0.0
        for i in range(len(space.resolutions))
    ]
    return Predictor("lut", space, {"table": lut.tolist(), "offset": offset})


# Subnets per unpenalised weight before the lookup-table sum gets one weight per layer kind.
PER_KIND_MIN_RATIO = 5


def _lut_columns(t: SpaceTables, enc: Encoded, lut: np.ndarray, per_kind: bool) -> np.ndarray:
    """The lookup-table sum over each subnet's layers: one column, or one per layer kind (a
    stage's first layer, its later layers). Layers measured alone run faster or slower in a
    whole model by a factor that differs by stage (cache reuse depends on the widths): on
    this project's 300 + 300 subnets one coefficient per kind raised Kendall tau by 0.003-0.006
    on five benchmark runs (cpu and tflite); one per kind and resolution did not."""
    idx, active = table_index(t, enc)
    contrib = lut[idx] * active
    if not per_kind:
        return contrib.sum(1, keepdims=True)
    return np.stack([(contrib * (t.kind == k)).sum(1) for k in range(t.n_kinds)], 1)


def _main_design(
    t: SpaceTables, enc: Encoded, lut: np.ndarray | None, per_kind: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Design matrix [physical, (LUT sums), table] and, over the unpenalised columns (physical
    and LUT sums), which weights must stay >= 0: the physical costs and the LUT coefficients
    (the table is a ridge-penalised correction). With the LUT sums in the model the
    per-resolution offsets may be negative: the layers measured alone can sum to more than
    the whole model takes (on 300 tflite subnets the free offsets came out at -0.11 to
    -0.12 ms, and keeping them >= 0 cost 11.6 points within 10%). Without the LUT every
    physical weight stays >= 0, as few subnets need."""
    p = physical(t, enc)
    nonneg = np.ones(p.shape[1], bool)
    if lut is not None:
        sums = _lut_columns(t, enc, lut, per_kind)
        p = np.concatenate([p, sums], 1)
        nonneg[-len(t.space.resolutions) :] = False
        nonneg = np.append(nonneg, np.ones(sums.shape[1], bool))
    return np.concatenate([p, table(t, enc)], 1), nonneg


def _rows(
    x: np.ndarray, y: np.ndarray, weight: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """The rows of the relative, weighted least-squares problem: sum(weight * ((x w - y) /
    y)^2) = |xw w - target|^2."""
    root = np.ones_like(y) if weight is None else np.sqrt(weight)
    return x / y[:, None] * root[:, None], root


def _fit_main_coef(
    x: np.ndarray, nonneg: np.ndarray, y: np.ndarray, lam: float, weight: np.ndarray | None = None
) -> np.ndarray:
    """`nonneg` covers the unpenalised leading columns (True: kept >= 0); the table columns
    after them are ridge-penalised by `lam` and free (`hwnas.latency.ridge`)."""
    xw, target = _rows(x, y, weight)
    k = len(nonneg)
    return ridge.solve(xw[:, :k], ridge.Eliminated.of(xw[:, k:]), target, lam, nonneg)


def choose_ridge(
    x: np.ndarray,
    nonneg: np.ndarray,
    y: np.ndarray,
    weight: np.ndarray | None = None,
    folds: int = 5,
    seed: int = 0,
) -> float:
    """The ridge strength with the lowest cross-validated (weighted) mean relative error, over
    scikit-learn's `KFold`. The fit itself is ours: scikit-learn's `Ridge` penalises every
    weight alike and bounds all or none, where this model penalises only the table's
    corrections and keeps only the physical costs >= 0; one SVD of the table per fold serves
    every strength (`hwnas.latency.ridge`)."""
    from sklearn.model_selection import KFold

    weight = np.ones_like(y) if weight is None else weight
    order = np.random.default_rng(seed).permutation(len(y))  # the folds: runs of this order
    k = len(nonneg)
    errs = np.zeros(len(RIDGE_GRID))
    for a, b in KFold(folds).split(order):
        train, test = order[a], order[b]
        xw, target = _rows(x[train], y[train], weight[train])
        elim = ridge.Eliminated.of(xw[:, k:])
        for i, lam in enumerate(RIDGE_GRID):
            w = ridge.solve(xw[:, :k], elim, target, lam, nonneg)
            errs[i] += float(np.sum(weight[test] * relative_error(x[test] @ w, y[test])))
    return RIDGE_GRID[int(np.argmin(errs))]


def _per_kind(t: SpaceTables, lut: np.ndarray | None, n: int) -> bool:
    return lut is not None and n >= PER_KIND_MIN_RATIO * (n_physical(t) + t.n_kinds)


def main_ridge(
    t: SpaceTables,
    enc: Encoded,
    y: np.ndarray,
    lut: np.ndarray | None = None,
    weight: np.ndarray | None = None,
) -> float:
    """The table's ridge strength `fit_main` would choose for these measurements."""
    lut = None if lut is not None and np.isnan(lut).any() else lut
    x, nonneg = _main_design(t, enc, lut, _per_kind(t, lut, len(y)))
    return _ridge_for(x, nonneg, y, weight)


def _ridge_for(
    x: np.ndarray, nonneg: np.ndarray, y: np.ndarray, weight: np.ndarray | None
) -> float:
    """Cross-validated from `RIDGE_CV_FROM` measurements on; the strongest below."""
    return choose_ridge(x, nonneg, y, weight) if len(y) >= RIDGE_CV_FROM else RIDGE_GRID[-1]


def fit_main(
    space: SearchSpace,
    t: SpaceTables,
    enc: Encoded,
    y: np.ndarray,
    lut: np.ndarray | None = None,
    weight: np.ndarray | None = None,
    extra: Sequence[Predictor] = (),
    lam: float | None = None,
) -> Predictor:
    """Fit `main`; `lut` (per table column, the layer measured alone) is used when complete;
    `weight` per measurement (default 1). `extra`: other targets' main predictors, whose
    predictions join the unpenalised features (each weight >= 0) and are folded into this
    predictor's own weights (a sum of linear models is one). `lam`: the table's ridge
    strength (default: chosen by cross-validation from 25 measurements on)."""
    if len(y) < MIN_FIT:
        raise PredictorError(
            f"{len(y)} measurements are too few to fit; measure at least {MIN_FIT}"
        )
    if lut is not None and np.isnan(lut).any():
        lut = None
    n_phys = n_physical(t)
    per_kind = _per_kind(t, lut, len(y))
    x, nonneg = _main_design(t, enc, lut, per_kind)
    if extra:
        cols = np.stack([p.linear_encoded(t, enc) for p in extra], 1)
        x = np.concatenate([x[:, : len(nonneg)], cols, x[:, len(nonneg) :]], 1)
        nonneg = np.append(nonneg, np.ones(len(extra), bool))
    n_unpen = len(nonneg)
    if lam is None:
        lam = _ridge_for(x, nonneg, y, weight)
    w = _fit_main_coef(x, nonneg, y, lam, weight)
    phys, folded = w[:n_phys], w[n_unpen:]
    n_lut = n_unpen - n_phys - len(extra)
    if lut is not None:  # the LUT coefficients after the physical ones, per table column
        kind_of_column = np.arange(len(lut)) // (len(lut) // t.n_kinds)
        coef = w[n_phys : n_phys + n_lut][kind_of_column if per_kind else 0]
        folded = folded + coef * lut
    for b, p in zip(w[n_phys + n_lut : n_unpen], extra, strict=True):
        phys = phys + b * np.asarray(p.coef["physical"])
        folded = folded + b * np.asarray(p.coef["table"])
    return Predictor(
        "main",
        space,
        {
            "physical": phys.tolist(),
            "table": np.asarray(folded).tolist(),
            "ridge": [lam],
            "uses_lut": [float(lut is not None)],
            "lut_per_kind": [float(per_kind)],
        },
    )


def metrics(pred: np.ndarray, y: np.ndarray) -> dict:
    """Share within +-5% and +-10%, MAPE (%), Kendall tau, on measured `y`; and `under_p95`,
    the 95th percentile of how far a measurement exceeds its prediction (relative), the margin
    a hard latency budget needs."""
    return {
        "n": len(y),
        "within5": within(pred, y, 0.05),
        "within10": within(pred, y, 0.10),
        "mape": float(100 * np.mean(relative_error(pred, y))),
        "kendall": kendall(pred, y),
        "under_p95": float(np.percentile(y / pred - 1, 95)) if len(y) else float("nan"),
    }


def holdout_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng((seed, 5)).permutation(n)
    k = round(n * fraction)
    return np.sort(order[k:]), np.sort(order[:k])


__all__ = ["PREDICTOR_KINDS", "Predictor", "PredictorError", "SpaceTables", "table_size"]
