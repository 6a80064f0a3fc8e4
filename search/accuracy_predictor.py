"""A predictor of a subnet's supernet accuracy from its architecture alone.

Once-for-All searches with an accuracy predictor: a 3-layer MLP of 400 hidden units on the
architecture's one-hot encoding (`SearchSpace.encode`: resolution, then per layer slot its
kernel and expand ratio, zeros where a slot is skipped), fitted on subnets evaluated with the
supernet. Here the same MLP stands beside ridge regression on the same encoding (`ridge`) and
on the encoding with each choice's effect allowed to differ per resolution (`ridge-res`: the
encoding times the resolution's one-hot, added to it; on the demo's digits run it ranks 200
held-out subnets at tau 0.71 where plain ridge reaches 0.63); `fit_best` picks the kind with
the higher cross-validated Kendall tau (what a search needs is the ranking) and refits it on
everything. Ridge is scikit-learn's `RidgeCV` (its strength by efficient leave-one-out over
`RIDGE_ALPHAS`), the folds scikit-learn's `KFold`; the MLP is trained with JAX and Optax.
Prediction is plain numpy (microseconds a subnet), and every kind is stored as JSON lists of
numbers (the fitted coefficients), never pickled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hwnas.latency.metrics import kendall
from hwnas.supernet.space import SearchSpace, Subnet

KINDS = ("ridge", "ridge-res", "mlp")
RIDGE_ALPHAS = (0.3, 3.0, 30.0, 300.0)  # chosen by leave-one-out (`RidgeCV`)
MLP_HIDDEN = (400, 400, 400)  # Once-for-All's accuracy predictor
MLP_STEPS = 300
MLP_LR = 1e-3
MLP_DECAY = 1e-4
FOLDS = 5


class AccuracyPredictorError(ValueError):
    """A stored accuracy predictor that does not fit the space or cannot be read."""


@dataclass(frozen=True)
class AccuracyPredictor:
    """`kind` ridge: one linear layer; mlp: ReLU layers. `layers` holds (weight, bias) pairs;
    predictions are `offset + scale * net(encoding)` (targets were standardised)."""

    kind: str
    space: SearchSpace
    layers: tuple[tuple[np.ndarray, np.ndarray], ...]
    offset: float
    scale: float

    def predict_encoded(self, x: np.ndarray) -> np.ndarray:
        h = features(self.kind, self.space, np.asarray(x, np.float64))
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return self.offset + self.scale * h[:, 0]

    def predict(self, subnets: Sequence[Subnet]) -> np.ndarray:
        return self.predict_encoded(encode(self.space, subnets))

    def __call__(self, subnet: Subnet) -> float:
        return float(self.predict([subnet])[0])

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "space": self.space.to_dict(),
            "layers": [[w.tolist(), b.tolist()] for w, b in self.layers],
            "offset": self.offset,
            "scale": self.scale,
        }

    @classmethod
    def from_dict(cls, data: dict) -> AccuracyPredictor:
        """The predictor `to_dict` stored, of the space stored with it."""
        try:
            space = SearchSpace.from_dict(data["space"])
        except (KeyError, TypeError, ValueError) as e:
            raise AccuracyPredictorError(f"unreadable accuracy predictor ({e})") from None
        return cls.of_space(space, data)

    @classmethod
    def of_space(cls, space: SearchSpace, data: dict) -> AccuracyPredictor:
        """The predictor `to_dict` stored, read as one of `space` (a run's space, for a row
        known to be of that run) without parsing the stored space again."""
        try:
            layers = tuple(
                (np.asarray(w, np.float64), np.asarray(b, np.float64)) for w, b in data["layers"]
            )
            p = cls(str(data["kind"]), space, layers, float(data["offset"]), float(data["scale"]))
        except (KeyError, TypeError, ValueError) as e:
            raise AccuracyPredictorError(f"unreadable accuracy predictor ({e})") from None
        width = features(p.kind, space, np.zeros((1, space.encoding_size))).shape[1]
        if p.kind not in KINDS or not layers or layers[0][0].shape[0] != width:
            raise AccuracyPredictorError("the accuracy predictor does not fit its space")
        return p


def encode(space: SearchSpace, subnets: Sequence[Subnet]) -> np.ndarray:
    """(N, encoding size) one-hot architecture encodings."""
    if not subnets:
        return np.zeros((0, space.encoding_size))
    return np.stack([space.encode(s) for s in subnets]).astype(np.float64)


def features(kind: str, space: SearchSpace, x: np.ndarray) -> np.ndarray:
    """The model's input: the encoding, for `ridge-res` followed by its products with the
    resolution's one-hot."""
    if kind != "ridge-res":
        return x
    nr = len(space.resolutions)
    per_res = x[:, nr:, None] * x[:, None, :nr]
    return np.concatenate([x, per_res.reshape(len(x), -1)], axis=1)


# ---- fitting ----------------------------------------------------------------------------------


def fit(kind: str, space: SearchSpace, x: np.ndarray, y: np.ndarray, seed: int = 0):
    """An `AccuracyPredictor` of `kind` fitted on encodings `x` and accuracies `y`."""
    y = np.asarray(y, np.float64)
    offset, scale = float(y.mean()), float(y.std()) or 1.0
    z = (y - offset) / scale
    if kind in ("ridge", "ridge-res"):
        layers = (_ridge(features(kind, space, x), z),)
    elif kind == "mlp":
        layers = _mlp(x, z, seed)
    else:
        raise ValueError(f"unknown accuracy predictor kind {kind!r}; choose {KINDS}")
    return AccuracyPredictor(kind, space, layers, offset, scale)


def _ridge(x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) of ridge regression, its strength the best of `RIDGE_ALPHAS` in
    leave-one-out error."""
    from sklearn.linear_model import RidgeCV

    model = RidgeCV(alphas=RIDGE_ALPHAS).fit(x, z)
    return np.asarray(model.coef_, np.float64)[:, None], np.asarray([model.intercept_])


def _mlp(x: np.ndarray, z: np.ndarray, seed: int) -> tuple:
    """Full-batch Adam with weight decay on the squared error (JAX, compiled once)."""
    import jax
    import jax.numpy as jnp
    import optax

    sizes = (x.shape[1], *MLP_HIDDEN, 1)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(sizes) - 1)
    params = [
        (jax.random.normal(k, (a, b)) * jnp.sqrt(2.0 / a), jnp.zeros(b))
        for k, a, b in zip(keys, sizes[:-1], sizes[1:], strict=True)
    ]
    opt = optax.adamw(MLP_LR, weight_decay=MLP_DECAY)
    xj, zj = jnp.asarray(x, jnp.float32), jnp.asarray(z, jnp.float32)

    def loss(ps):
        h = xj
        for i, (w, b) in enumerate(ps):
            h = h @ w + b
            h = jax.nn.relu(h) if i < len(ps) - 1 else h
        return jnp.mean((h[:, 0] - zj) ** 2)

    def step(_, carry):
        ps, st = carry
        g = jax.grad(loss)(ps)
        upd, st = opt.update(g, st, ps)
        return optax.apply_updates(ps, upd), st

    run = jax.jit(lambda ps: jax.lax.fori_loop(0, MLP_STEPS, step, (ps, opt.init(ps)))[0])
    trained = run(params)
    return tuple((np.asarray(w, np.float64), np.asarray(b, np.float64)) for w, b in trained)


def cross_validate(
    space: SearchSpace, x: np.ndarray, y: np.ndarray, kinds=KINDS, seed: int = 0
) -> dict[str, dict]:
    """Per kind, over `FOLDS` folds: Kendall tau and RMSE of the out-of-fold predictions."""
    from sklearn.model_selection import KFold

    y = np.asarray(y, np.float64)
    folds = list(KFold(FOLDS, shuffle=True, random_state=seed).split(x))
    out = {}
    for kind in kinds:
        pred = np.empty_like(y)
        for train, held in folds:
            pred[held] = fit(kind, space, x[train], y[train], seed).predict_encoded(x[held])
        out[kind] = {"kendall": kendall(pred, y), "rmse": float(np.sqrt(np.mean((pred - y) ** 2)))}
    return out


def fit_best(space: SearchSpace, x: np.ndarray, y: np.ndarray, seed: int = 0):
    """(the predictor of the kind with the best cross-validated tau, fitted on all, the CV
    figures of every kind)."""
    if len(y) < 2 * FOLDS:
        raise ValueError(f"an accuracy predictor needs at least {2 * FOLDS} subnets")
    cv = cross_validate(space, x, y, seed=seed)
    best = max(cv, key=lambda k: cv[k]["kendall"])
    return fit(best, space, x, y, seed), cv
