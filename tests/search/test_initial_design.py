"""The search's initial design: subnets spread over the size range, enqueued into a new study
only, and decoded back to the same subnets by the trial."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest

from hwnas.search.initial_design import enqueue_initial, initial_subnets
from hwnas.search.objective import subnet_params, suggest_subnet
from hwnas.supernet.space import SearchSpace, default_space

TINY = Path(__file__).parent.parent / "data" / "tiny_space.json"


@pytest.fixture
def space() -> SearchSpace:
    return SearchSpace.from_file(TINY)


def test_a_subnets_parameters_decode_back_to_it(space):
    rng = np.random.default_rng(0)
    for s in [space.smallest(), space.largest(), *(space.sample(rng) for _ in range(30))]:
        assert suggest_subnet(optuna.trial.FixedTrial(subnet_params(space, s)), space) == s


def test_the_design_runs_from_the_smallest_to_the_largest_subnet():
    space = default_space()
    subnets = initial_subnets(space, 10, seed=0)
    assert len({s.key for s in subnets}) == 10
    assert subnets[0] == space.smallest() and subnets[-1] == space.largest()
    macs = [space.cost(s).macs for s in subnets]
    rng = np.random.default_rng(1)
    uniform = [space.cost(space.sample(rng)).macs for _ in range(200)]
    assert min(macs) < min(uniform) and max(macs) > max(uniform)
    assert np.corrcoef(np.arange(10), macs)[0, 1] > 0.8  # sizes grow with the level


def _optimize(study: optuna.Study, space: SearchSpace, n: int) -> list:
    study.optimize(lambda t: float(space.cost(suggest_subnet(t, space)).macs), n_trials=n)
    return [suggest_subnet(optuna.trial.FixedTrial(t.params), space) for t in study.trials]


def test_a_new_study_runs_the_design_first_and_a_resumed_one_gets_none(space):
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    assert enqueue_initial(study, space, "tpe", 4, seed=0) == 4
    ran = _optimize(study, space, 6)
    assert ran[:4] == initial_subnets(space, 4, seed=0)
    assert enqueue_initial(study, space, "tpe", 4, seed=0) == 0
    assert not study.get_trials(states=(optuna.trial.TrialState.WAITING,))


def test_random_search_and_zero_get_no_design(space):
    for sampler, n in (("random", 4), ("tpe", 0)):
        study = optuna.create_study()
        assert enqueue_initial(study, space, sampler, n, seed=0) == 0
        assert not study.trials
