from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np
import pytest

from hwnas.supernet import checkpoint
from hwnas.supernet.data import load_dataset
from hwnas.supernet.evaluate import Evaluator
from hwnas.supernet.model import SuperNet, arch_arrays, stack_archs
from hwnas.supernet.sorting import sort_channels
from hwnas.supernet.space import SearchSpace
from hwnas.supernet.train_step import (
    TrainConfig,
    create_train_state,
    make_optimizer,
    make_train_step,
    resize_images,
    step_subnets,
)

TINY = Path(__file__).parent.parent / "data" / "tiny_space.json"


@pytest.fixture(scope="module")
def setup():
    data = load_dataset("digits", seed=0)
    space = dataclasses.replace(SearchSpace.from_file(TINY), num_classes=data.num_classes)
    config = TrainConfig(epochs=1, batch_size=32)
    net = SuperNet(space)
    tx = make_optimizer(config, 10)
    images = {r: resize_images(data.x_train[:64], r) for r in space.resolutions}
    return space, config, net, tx, images, data.y_train[:64]


def test_one_compile_per_resolution_whatever_the_subnets(setup):
    space, config, net, tx, images, y = setup
    state = create_train_state(net, tx, 0)
    step = make_train_step(net, tx)
    seen = set()
    for i in range(8):
        subnets = step_subnets(space, config, i)
        seen.add(subnets[0].resolution)
        archs = stack_archs([arch_arrays(space, s) for s in subnets])
        state, metrics = step(state, images[subnets[0].resolution][:32], y[:32], archs)
        assert np.isfinite(metrics["loss"])
    assert len({s.key for i in range(8) for s in step_subnets(space, config, i)}) > 8
    assert step._cache_size() == len(seen) == 2


def test_step_subnets_are_a_sandwich_at_one_resolution(setup):
    space, config, *_ = setup
    subnets = step_subnets(space, config, 3)
    assert len(subnets) == 2 + config.n_random
    assert len({s.resolution for s in subnets}) == 1
    big, small = subnets[0], subnets[1]
    assert (big.depths, big.kernels) == (space.largest().depths, space.largest().kernels)
    assert (small.depths, small.expands) == (space.smallest().depths, space.smallest().expands)
    assert step_subnets(space, config, 3) == subnets  # same step, same subnets (resume)


def test_sorting_channels_keeps_the_largest_function_and_orders_importance(setup):
    space, _config, net, tx, images, _y = setup
    state = create_train_state(net, tx, 1)
    params = jax.tree.map(
        lambda p: p + 0.1 * np.random.default_rng(0).standard_normal(p.shape), state.params
    )
    ev = Evaluator.for_net(net)
    big = arch_arrays(space, space.largest())
    x = images[space.resolutions[-1]][:16]
    stats = ev.recalibrate({"params": params, "batch_stats": state.batch_stats}, big, [x])
    before = ev.logits({"params": params, "batch_stats": stats}, x, big)
    p2, s2, opt2 = sort_channels(params, stats, tx.init(params))
    after = ev.logits({"params": p2, "batch_stats": s2}, x, big)
    np.testing.assert_allclose(before, after, atol=1e-4)
    importance = np.abs(np.asarray(p2["blocks_0"]["project"])).sum(axis=1)
    assert np.all(np.diff(importance) <= 1e-6)
    assert jax.tree.structure(opt2) == jax.tree.structure(tx.init(params))


def test_checkpoint_round_trip_and_corruption(tmp_path, setup):
    _space, _config, net, tx, *_ = setup
    state = create_train_state(net, tx, 0)
    path = tmp_path / "c.ckpt"
    digest, nbytes = checkpoint.save(path, {"state": state, "epoch": 3})
    assert path.stat().st_size == nbytes and not list(tmp_path.glob("*.tmp"))
    back, d2 = checkpoint.restore(path, {"state": state, "epoch": 0})
    assert d2 == digest and int(back["epoch"]) == 3
    jax.tree.map(np.testing.assert_array_equal, back["state"].params, state.params)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="corrupt or truncated"):
        checkpoint.restore(path, {"state": state, "epoch": 0})
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(checkpoint.CheckpointError, match="hash mismatch"):
        checkpoint.read_state_dict(path)
    path.write_bytes(b"\x80\x03pickle")
    with pytest.raises(checkpoint.CheckpointError, match="not an hwnas checkpoint"):
        checkpoint.read_state_dict(path)
