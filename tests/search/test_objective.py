"""The search problem: directions, objective values, budgets with safety margins, and the
subnet a trial's parameters decode to."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from hwnas.search.objective import Evaluation, Problem, make_objective, suggest_subnet
from hwnas.supernet.space import SearchSpace

TINY = Path(__file__).parent.parent / "data" / "tiny_space.json"
CAND = {"accuracy": 0.9, "latency_ms": {"a": 2.0, "b": 5.0}, "params": 10, "macs": 20}


def test_directions_and_values_follow_targets_and_extras():
    p = Problem(("a", "b"), extras=("macs",))
    assert p.directions == ["maximize", "minimize", "minimize", "minimize"]
    assert p.values(CAND) == [0.9, 2.0, 5.0, 20.0]


def test_budgets_are_relative_overshoots_with_the_margin():
    p = Problem(("a", "b"), budgets=(("a", 2.5), ("b", 4.0)))
    assert p.violations(CAND["latency_ms"]) == pytest.approx([-0.2, 0.25])
    assert not p.feasible(CAND["latency_ms"])
    q = Problem(("a",), budgets=(("a", 2.1),), margins=(("a", 0.04),))
    assert q.feasible({"a": 2.0}) and not q.feasible({"a": 2.03})


def test_each_trial_stores_its_budget_violations_for_the_sampler():
    space = SearchSpace.from_file(TINY)
    problem = Problem(("a",), budgets=(("a", 9.0),))  # latency = resolution: 8 fits, 10 not

    def evaluate(subnet):
        return Evaluation(subnet, subnet.resolution / 10, {"a": float(subnet.resolution)}, 0, 0)

    study = optuna.create_study(
        directions=problem.directions, sampler=optuna.samplers.TPESampler(seed=0)
    )
    study.optimize(make_objective(space, problem, evaluate), n_trials=12)
    for trial in study.trials:
        res = trial.user_attrs["candidate"]["subnet"]["resolution"]
        assert trial.constraints == {"0": pytest.approx(res / 9.0 - 1)}
    assert {t.user_attrs["candidate"]["subnet"]["resolution"] for t in study.trials} == {8, 10}
    # Optuna's front keeps the feasible trials only, though the 10-px ones are more accurate
    assert {t.user_attrs["candidate"]["subnet"]["resolution"] for t in study.best_trials} == {8}


def test_trial_parameters_decode_to_a_normalised_subnet():
    space = SearchSpace.from_file(TINY)
    params = {"d0": 1, "d1": 2, "k0": 5, "k1": 3, "k2": 3, "k3": 5, "e0": 3, "e1": 2,
              "e2": 2, "e3": 3, "resolution": 10}  # fmt: skip
    subnet = suggest_subnet(optuna.trial.FixedTrial(params), space)
    assert subnet.resolution == 10 and subnet.depths == (1, 2)
    assert subnet.kernels == (5, 0, 3, 5) and subnet.expands == (3, 0, 2, 3)
