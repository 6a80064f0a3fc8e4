"""Standalone subnets cut out of the supernet: same logits, exact parameter counts, real weight
sharing and a real depthwise convolution.

Supernet variables have the exact tree of `SuperNet.init` (taken with `jax.eval_shape`, as
compiling the init costs seconds on CPU) filled with random values at init scale, so no check
passes on ones and zeros; BatchNorm statistics are recalibrated for each subnet on the tiny
space (and random on the default space, whose recalibration compile is slow).
"""

from __future__ import annotations

import dataclasses
import re
from functools import cache
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hwnas.supernet.evaluate import Evaluator
from hwnas.supernet.extract import StandaloneNet, extract_variables, param_count, standalone
from hwnas.supernet.model import SuperNet, arch_arrays
from hwnas.supernet.space import SearchSpace, StageSpec, default_space

TINY = SearchSpace(
    name="tiny",
    stages=(StageSpec(8, 1), StageSpec(16, 2, se=True, act="hswish")),
    depths=(1, 2),
    kernels=(3, 5),
    expands=(2, 3),
    resolutions=(8, 10),
    stem_width=8,
    stem_stride=1,
    head_width=16,
    num_classes=4,
)
ATOL = 1e-4


def random_variables(space: SearchSpace, seed: int) -> dict:
    """The supernet's variable tree with random values: weights at He scale, BN scales around
    1, biases and means around 0, variances in [1, 1.5)."""
    net, r = SuperNet(space), space.resolutions[-1]
    x = jnp.zeros((1, r, r, space.in_channels))
    arch = arch_arrays(space, space.largest())
    shapes = jax.eval_shape(lambda k: net.init(k, x, arch, train=False), jax.random.key(0))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name, shape = str(path[-1].key), leaf.shape
        if len(shape) >= 2:
            value = rng.normal(size=shape) * np.sqrt(2.0 / np.prod(shape[:-1]))
        elif name.endswith("scale"):
            value = 1.0 + 0.2 * rng.normal(size=shape)
        elif name.endswith("var"):
            value = 1.0 + 0.5 * rng.random(size=shape)
        else:
            value = 0.2 * rng.normal(size=shape)
        return value.astype(np.float32)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def images(space: SearchSpace, resolution: int, n: int, seed: int) -> np.ndarray:
    shape = (n, resolution, resolution, space.in_channels)
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@cache
def evaluator(space: SearchSpace) -> Evaluator:
    return Evaluator.for_net(SuperNet(space))


@cache
def standalone_fn(space: SearchSpace, subnet):
    return jax.jit(StandaloneNet(space, subnet).apply)


def recalibrated(space: SearchSpace, variables: dict, subnet) -> dict:
    calib = [images(space, subnet.resolution, 16, seed) for seed in (10, 11)]
    stats = evaluator(space).recalibrate(variables, arch_arrays(space, subnet), calib)
    return {"params": variables["params"], "batch_stats": jax.device_get(stats)}


def standalone_logits(space: SearchSpace, subnet, variables: dict, x) -> np.ndarray:
    return np.asarray(standalone_fn(space, subnet)(extract_variables(space, subnet, variables), x))


def tiny_subnets() -> dict:
    return {
        "largest": TINY.largest(),
        "smallest": TINY.smallest(),
        **{f"random{s}": TINY.sample(np.random.default_rng(s)) for s in (1, 2, 3)},
    }


@pytest.fixture(scope="module")
def tiny_variables() -> dict:
    return random_variables(TINY, seed=0)


# ---- 1. parity with the supernet --------------------------------------------------------------
@pytest.mark.parametrize("which", list(tiny_subnets()))
def test_standalone_matches_supernet(tiny_variables, which):
    subnet = tiny_subnets()[which]
    variables = recalibrated(TINY, tiny_variables, subnet)
    x = images(TINY, subnet.resolution, 8, seed=1)
    expected = np.asarray(evaluator(TINY).logits(variables, x, arch_arrays(TINY, subnet)))
    got = standalone_logits(TINY, subnet, variables, x)
    assert got.shape == (8, TINY.num_classes)
    assert np.abs(expected).max() > 0.05  # not trivially zero
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


def test_default_space_largest_and_random():
    space = default_space()
    variables = random_variables(space, seed=3)
    r = space.resolutions[-1]  # one supernet compile serves both subnets
    sampled = space.sample(np.random.default_rng(5))
    subnets = [space.largest(), dataclasses.replace(sampled, resolution=r)]
    x = images(space, r, 4, seed=2)
    for subnet in subnets:
        net, sliced = standalone(space, subnet, variables)
        assert param_count(sliced) == space.cost(subnet).params
        expected = np.asarray(evaluator(space).logits(variables, x, arch_arrays(space, subnet)))
        got = np.asarray(jax.jit(net.apply)(sliced, x))
        assert np.abs(expected).max() > 0.05
        np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


def test_standalone_matches_supernet_at_224_px():
    """At 224 px the supernet's depthwise layers run as shifted multiply-adds (112x112 to
    28x28) and spatial matmuls (14x14 and below); the standalone model's as grouped
    convolutions: the logits still agree to 1e-4."""
    space = SearchSpace.from_file(Path(__file__).parent.parent / "data" / "narrow_224.json")
    variables = random_variables(space, seed=4)
    sampled = space.sample(np.random.default_rng(6))
    for subnet in (space.largest(), dataclasses.replace(sampled, resolution=224)):
        x = images(space, 224, 2, seed=3)
        net, sliced = standalone(space, subnet, variables)
        expected = np.asarray(evaluator(space).logits(variables, x, arch_arrays(space, subnet)))
        got = np.asarray(jax.jit(net.apply)(sliced, x))
        assert np.abs(expected).max() > 0.05
        np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


# ---- 2. exact parameter count and variable tree ------------------------------------------------
@pytest.mark.parametrize("space", [TINY, default_space()], ids=["tiny", "default"])
def test_param_count_is_analytic_count(space):
    variables = random_variables(space, seed=1)
    rng = np.random.default_rng(7)
    subnets = [space.largest(), space.smallest(), *(space.sample(rng) for _ in range(4))]
    for subnet in subnets:
        sliced = extract_variables(space, subnet, variables)
        assert param_count(sliced) == space.cost(subnet).params, subnet.key


def test_extracted_tree_matches_standalone_init(tiny_variables):
    for subnet in tiny_subnets().values():
        net = StandaloneNet(TINY, subnet)
        x = jnp.zeros((1, subnet.resolution, subnet.resolution, TINY.in_channels))
        want = jax.eval_shape(lambda net=net, x=x: net.init(jax.random.key(0), x))
        got = extract_variables(TINY, subnet, tiny_variables)
        assert jax.tree.structure(got) == jax.tree.structure(want)
        assert jax.tree.map(np.shape, got) == jax.tree.map(lambda s: s.shape, want)


# ---- 3. weight sharing ------------------------------------------------------------------------
def _with(space, depths, kernel, expand):
    n = space.n_slots
    return space.subnet(space.resolutions[0], depths, (kernel,) * n, (expand,) * n)


def test_smaller_kernels_are_the_centre_of_larger_ones(tiny_variables):
    depths = (1, 1)
    k3 = extract_variables(TINY, _with(TINY, depths, 3, 2), tiny_variables)["params"]
    k5 = extract_variables(TINY, _with(TINY, depths, 5, 2), tiny_variables)["params"]
    full = tiny_variables["params"]["blocks_0"]["dw"]  # (5, 5, mid_max)
    mid = 2 * TINY.stem_width
    dw3, dw5 = k3["blocks_0"]["dw"]["kernel"], k5["blocks_0"]["dw"]["kernel"]
    assert dw3.shape == (3, 3, 1, mid) and dw5.shape == (5, 5, 1, mid)
    np.testing.assert_array_equal(dw3[:, :, 0], full[1:4, 1:4, :mid])
    np.testing.assert_array_equal(dw5[:, :, 0], full[:, :, :mid])
    np.testing.assert_array_equal(dw3, dw5[1:4, 1:4])


def test_first_channels_are_shared(tiny_variables):
    depths = (2, 2)
    e2 = extract_variables(TINY, _with(TINY, depths, 3, 2), tiny_variables)["params"]
    e3 = extract_variables(TINY, _with(TINY, depths, 3, 3), tiny_variables)["params"]
    for slot in (0, 2, 3):
        a, b = e2[f"blocks_{slot}"], e3[f"blocks_{slot}"]
        mid = a["expand"]["kernel"].shape[-1]
        assert b["expand"]["kernel"].shape[-1] == mid * 3 // 2
        np.testing.assert_array_equal(a["expand"]["kernel"], b["expand"]["kernel"][..., :mid])
        np.testing.assert_array_equal(a["project"]["kernel"], b["project"]["kernel"][:, :, :mid])
        np.testing.assert_array_equal(a["bn1"]["scale"], b["bn1"]["scale"][:mid])
    se2, se3 = e2["blocks_2"]["se_fc1"]["kernel"], e3["blocks_2"]["se_fc1"]["kernel"]
    np.testing.assert_array_equal(se2, se3[: se2.shape[0], : se2.shape[1]])


def _edited(variables: dict, edit) -> dict:
    params = jax.tree.map(np.array, variables["params"])  # a writable copy
    edit(params)
    return {"params": params, "batch_stats": variables["batch_stats"]}


def test_changing_a_shared_weight_changes_every_subnet(tiny_variables):
    subnets = tiny_subnets()
    assert subnets["smallest"].kernels[0] < subnets["largest"].kernels[0]
    assert subnets["smallest"].expands[0] < subnets["largest"].expands[0]
    calibrated = {name: recalibrated(TINY, tiny_variables, s) for name, s in subnets.items()}
    centre = max(TINY.kernels) // 2

    def shared(p):
        p["blocks_0"]["dw"][centre, centre, 0] += 1.0
        p["blocks_0"]["expand"][0, 0] += 1.0

    def corner(p):  # only 5x5 kernels read it
        p["blocks_0"]["dw"][0, 0, :] += 1.0

    def last_channel(p):  # only expand 3 reads it
        p["blocks_0"]["expand"][:, -1] += 1.0

    def logits(name, variables):
        x = images(TINY, subnets[name].resolution, 8, seed=4)
        return standalone_logits(TINY, subnets[name], variables, x)

    def changed(name, edit):
        before = logits(name, calibrated[name])
        after = logits(name, _edited(calibrated[name], edit))
        return float(np.abs(after - before).max())

    for name in subnets:
        assert changed(name, shared) > 1e-3, name
    for edit in (corner, last_channel):
        assert changed("largest", edit) > 1e-3
        assert changed("smallest", edit) == 0.0


# ---- 4. a real depthwise convolution ------------------------------------------------------------
def test_jaxpr_has_grouped_convolution(tiny_variables):
    subnet = TINY.largest()
    net, variables = standalone(TINY, subnet, tiny_variables)
    x = jnp.zeros((2, subnet.resolution, subnet.resolution, TINY.in_channels))
    jaxpr = str(jax.make_jaxpr(lambda x: net.apply(variables, x))(x))
    groups = [int(g) for g in re.findall(r"feature_group_count=(\d+)", jaxpr)]
    assert len([g for g in groups if g > 1]) == sum(TINY.largest().depths)
    mids = {layer.mid for layer in TINY.layers(subnet)}
    assert {g for g in groups if g > 1} == mids
