"""The hand-written backward passes of `supernet/layers.py` against autodiff of the plain forms."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from hwnas.supernet.layers import BN_EPS, batch_norm, conv1x1, patches
from hwnas.supernet.model import Pointwise, Stem


def _rand(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _close(a, b, tol=1e-5):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        scale = float(jnp.max(jnp.abs(y))) or 1.0
        assert float(jnp.max(jnp.abs(x - y))) / scale < tol


def test_conv1x1_gradients_match_autodiff():
    x, w, r = _rand((2, 5, 6, 7), 0), _rand((7, 9), 1), _rand((2, 5, 6, 9), 2)

    def loss(conv):
        return lambda x, w: jnp.sum(jnp.tanh(conv(x, w)) * r)

    plain = lambda x, w: jnp.einsum("bhwc,cd->bhwd", x, w)  # noqa: E731
    got = jax.grad(loss(conv1x1), argnums=(0, 1))(x, w)
    want = jax.grad(loss(plain), argnums=(0, 1))(x, w)
    _close(conv1x1(x, w), plain(x, w))
    _close(got, want)


def _plain_bn(x, scale, bias):
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axes)
    var = jnp.maximum(jnp.mean(jnp.square(x), axes) - jnp.square(mean), 0.0)
    return (x - mean) * (scale * lax.rsqrt(var + BN_EPS)) + bias


@pytest.mark.parametrize("shape", [(4, 3, 3, 5), (6, 5)])
def test_batch_norm_training_gradients_match_autodiff(shape):
    x = _rand(shape, 3) * 2.0 + 0.5
    scale, bias, r = _rand(shape[-1:], 4), _rand(shape[-1:], 5), _rand(shape, 6)
    zero, one = jnp.zeros(shape[-1]), jnp.ones(shape[-1])

    def ours(x, s, b):
        return jnp.sum(jax.nn.relu(batch_norm(x, s, b, zero, one, True)[0]) * r)

    def plain(x, s, b):
        return jnp.sum(jax.nn.relu(_plain_bn(x, s, b)) * r)

    _close(
        jax.grad(ours, argnums=(0, 1, 2))(x, scale, bias),
        jax.grad(plain, (0, 1, 2))(x, scale, bias),
    )
    y, (mean, _) = batch_norm(x, scale, bias, zero, one, True)
    _close(y, _plain_bn(x, scale, bias))
    _close(mean, jnp.mean(x, tuple(range(x.ndim - 1))))


@pytest.mark.parametrize(("size", "stride"), [(9, 2), (8, 2), (7, 1)])
def test_stem_as_patches_matches_nn_conv(size, stride):
    x = _rand((2, size, size, 3), 7)
    conv = nn.Conv(8, (3, 3), strides=stride, padding="SAME", use_bias=False)
    params = conv.init(jax.random.key(0), x)
    stem = Stem(8, stride)
    assert jax.tree.map(jnp.shape, stem.init(jax.random.key(0), x)) == jax.tree.map(
        jnp.shape, params
    )
    _close(stem.apply(params, x), conv.apply(params, x))
    r = _rand(conv.apply(params, x).shape, 8)
    grads = [jax.grad(lambda p, m=m: jnp.sum(m.apply(p, x) * r))(params) for m in (stem, conv)]
    _close(*grads)
    assert patches(x, 3, stride).shape[-1] == 27


def test_pointwise_matches_nn_conv():
    x = _rand((2, 4, 4, 6), 9)
    conv = nn.Conv(5, (1, 1), use_bias=False)
    params = conv.init(jax.random.key(0), x)
    _close(Pointwise(5).apply(params, x), conv.apply(params, x))
