"""The search's accuracy oracle: the same figure as `hwnas subnet`, one compile per resolution."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from hwnas.supernet.batch_accuracy import AccuracyOracle, OracleInputs
from hwnas.supernet.data import load_dataset
from hwnas.supernet.model import SuperNet
from hwnas.supernet.space import SearchSpace
from hwnas.supernet.train_config import TrainConfig
from hwnas.supernet.train_loop import subnet_val_accuracy
from hwnas.supernet.train_step import create_train_state, make_optimizer

TINY = Path(__file__).parent.parent / "data" / "tiny_space.json"


@pytest.fixture(scope="module")
def oracle_setup():
    data = load_dataset("digits", seed=0)
    space = dataclasses.replace(SearchSpace.from_file(TINY), num_classes=data.num_classes)
    config = TrainConfig(epochs=1, batch_size=32, recalib_batches=3)
    state = create_train_state(SuperNet(space), make_optimizer(config, 10), 0)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    return space, config, variables, data


def test_oracle_matches_the_batchwise_evaluation(oracle_setup):
    space, config, variables, data = oracle_setup
    oracle = AccuracyOracle(space, OracleInputs.of(variables, data, config))
    rng = np.random.default_rng(1)
    for subnet in [space.largest(), space.smallest(), space.sample(rng), space.sample(rng)]:
        slow = subnet_val_accuracy(space, variables, data, subnet, config)
        assert oracle(subnet) == pytest.approx(slow, abs=1.5 / len(data.y_val))


def test_one_compile_per_resolution_and_a_cache_per_subnet(oracle_setup):
    space, config, variables, data = oracle_setup
    oracle = AccuracyOracle(space, OracleInputs.of(variables, data, config))
    rng = np.random.default_rng(2)
    subnets = [space.sample(rng) for _ in range(12)]
    values = [oracle(s) for s in subnets]
    assert oracle._fn._cache_size() == len({s.resolution for s in subnets})
    assert [oracle(s) for s in subnets] == values
    assert len(oracle._cache) == len({s.key for s in subnets})


def test_the_halves_are_the_even_and_odd_validation_images(oracle_setup):
    space, config, variables, data = oracle_setup
    half = dataclasses.replace(data, x_val=data.x_val[0::2], y_val=data.y_val[0::2])
    subnet = space.largest()
    full, even, odd = AccuracyOracle(space, OracleInputs.of(variables, data, config)).evaluate(
        subnet
    )
    n_even, n = len(half.y_val), len(data.y_val)
    assert even == pytest.approx(
        AccuracyOracle(space, OracleInputs.of(variables, half, config))(subnet)
    )
    assert full == pytest.approx((even * n_even + odd * (n - n_even)) / n)


def test_accuracy_moves_in_steps_of_one_validation_image(oracle_setup):
    space, config, variables, data = oracle_setup
    oracle = AccuracyOracle(space, OracleInputs.of(variables, data, config))
    assert oracle.n_val == len(data.y_val)
    correct = oracle(space.smallest()) * oracle.n_val
    assert correct == pytest.approx(round(correct), abs=1e-9)


def test_an_oracle_read_from_its_inputs_file_scores_the_same(oracle_setup, tmp_path):
    space, config, variables, data = oracle_setup
    inputs = OracleInputs.of(variables, data, config)
    path = inputs.write(tmp_path / "oracle.npz")
    assert [p.name for p in tmp_path.iterdir()] == ["oracle.npz"]  # no temporary left
    read = AccuracyOracle.read(space, path)
    rng = np.random.default_rng(3)
    for subnet in [space.largest(), space.sample(rng), space.sample(rng)]:
        assert read.evaluate(subnet) == AccuracyOracle(space, inputs).evaluate(subnet)
