"""One search trial: the subnet Optuna suggests, its objectives, its budget constraints.

Every decision of the space is a fixed categorical parameter (resolution, a depth per stage, a
kernel and an expand ratio per layer slot), so all samplers see the same fixed search space;
slots beyond a stage's depth are then ignored by the subnet itself. A trial's evaluation is
kept whole in one user attribute (`candidate`), which the constraints and the candidates table
read back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import optuna

from hwnas.latency.features import SpaceTables
from hwnas.latency.predictor import Predictor
from hwnas.supernet.space import SearchSpace, Subnet

EXTRAS = ("params", "macs")
Direction = Literal["minimize", "maximize"]


@dataclass(frozen=True)
class Evaluation:
    subnet: Subnet
    accuracy: float
    latency_ms: Mapping[str, float]
    params: int
    macs: int
    extrapolated: tuple[str, ...] = ()  # targets whose prediction left the fitted range
    accuracy_supernet: float | None = None  # where `accuracy` is the supernet's

    def to_dict(self) -> dict:
        return {
            "subnet": self.subnet.to_dict(),
            "key": self.subnet.key,
            "accuracy": self.accuracy,
            "accuracy_supernet": self.accuracy_supernet,
            "latency_ms": dict(self.latency_ms),
            "params": self.params,
            "macs": self.macs,
            "extrapolated": list(self.extrapolated),
        }


@dataclass(frozen=True)
class Problem:
    """What a search optimises: accuracy up, latency on every target down (plus optional
    params/MACs), subject to hard latency budgets (ms) on some targets. A budget holds when
    the predicted latency times (1 + the target's safety margin) is within it."""

    targets: tuple[str, ...]
    budgets: tuple[tuple[str, float], ...] = ()
    extras: tuple[str, ...] = ()
    margins: tuple[tuple[str, float], ...] = ()

    @property
    def directions(self) -> list[Direction]:
        first: list[Direction] = ["maximize"]
        return first + ["minimize"] * (len(self.targets) + len(self.extras))

    def values(self, ev: Mapping) -> list[float]:
        """Objective values of a candidate dict (`Evaluation.to_dict()`)."""
        lat = [float(ev["latency_ms"][t]) for t in self.targets]
        return [float(ev["accuracy"]), *lat, *(float(ev[x]) for x in self.extras)]

    def violations(self, latency_ms: Mapping[str, float]) -> list[float]:
        """Relative overshoot of each budget (> 0 violated), as Optuna's constraints want."""
        m = dict(self.margins)
        return [latency_ms[t] * (1 + m.get(t, 0.0)) / ms - 1.0 for t, ms in self.budgets]

    def feasible(self, latency_ms: Mapping[str, float]) -> bool:
        return all(v <= 0 for v in self.violations(latency_ms))

    def constraints(self, latency_ms: Mapping[str, float]) -> dict[str, float]:
        """The violations keyed as a trial stores them (`Trial.set_constraint`): "0", "1", ..."""
        return {str(i): v for i, v in enumerate(self.violations(latency_ms))}


def subnet_params(space: SearchSpace, subnet: Subnet) -> dict[str, int]:
    """The trial parameters `suggest_subnet` turns into `subnet` (for `enqueue_trial`); a
    skipped slot takes the first choice, which the subnet ignores."""
    params = {f"d{s}": int(d) for s, d in enumerate(subnet.depths)}
    for i in range(space.n_slots):
        params[f"k{i}"] = int(subnet.kernels[i] or space.kernels[0])
        params[f"e{i}"] = int(subnet.expands[i] or space.expands[0])
    return params | {"resolution": int(subnet.resolution)}


def suggest_subnet(trial: optuna.Trial, space: SearchSpace) -> Subnet:
    depths = [trial.suggest_categorical(f"d{s}", space.depths) for s in range(space.n_stages)]
    kernels = [trial.suggest_categorical(f"k{i}", space.kernels) for i in range(space.n_slots)]
    expands = [trial.suggest_categorical(f"e{i}", space.expands) for i in range(space.n_slots)]
    resolution = trial.suggest_categorical("resolution", space.resolutions)
    return space.subnet(resolution, depths, kernels, expands)


def score(
    predictors: Mapping[str, Predictor], subnets: Sequence[Subnet]
) -> tuple[list[dict[str, float]], list[tuple[str, ...]]]:
    """Per subnet: the predicted ms on every target, and the targets whose prediction is
    extrapolated (`Predictor.extrapolated`)."""
    lat: list[dict[str, float]] = [{} for _ in subnets]
    flags: list[list[str]] = [[] for _ in subnets]
    for key, p in predictors.items():
        t = SpaceTables(p.space)
        enc = t.encode(subnets)
        for i, (ms, out) in enumerate(
            zip(p.predict_encoded(t, enc), p.extrapolated_encoded(t, enc), strict=True)
        ):
            lat[i][key] = float(ms)
            if out:
                flags[i].append(key)
    return lat, [tuple(f) for f in flags]


class TrialEvaluator:
    """Accuracy (the supernet's, BN recalibrated, or an accuracy predictor's: `supernet`
    says which) and predicted latency per target."""

    def __init__(
        self,
        space: SearchSpace,
        accuracy: Callable[[Subnet], float],
        predictors: Mapping[str, Predictor],
        supernet: bool = True,
    ) -> None:
        self.space = space
        self._accuracy = accuracy
        self._predictors = dict(predictors)
        self.supernet = supernet

    def __call__(self, subnet: Subnet) -> Evaluation:
        cost = self.space.cost(subnet)
        (lat,), (flags,) = score(self._predictors, [subnet])
        acc = float(self._accuracy(subnet))
        return Evaluation(subnet, acc, lat, cost.params, cost.macs, flags,
                          acc if self.supernet else None)  # fmt: skip


def make_objective(
    space: SearchSpace, problem: Problem, evaluate: TrialEvaluator, round_: int = 0
) -> Callable:
    """The trial function; a trial of a later round of the closed loop
    (`search/services/rounds.py`) says its round in the `round` attribute."""

    def objective(trial: optuna.Trial) -> list[float]:
        cand = evaluate(suggest_subnet(trial, space)).to_dict()
        if round_:
            trial.set_user_attr("round", round_)
        trial.set_user_attr("candidate", cand)
        for key, violation in problem.constraints(cand["latency_ms"]).items():
            trial.set_constraint(key, violation)  # the samplers read them from the trial
        return problem.values(cand)

    return objective
