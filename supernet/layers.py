"""Pure layer functions shared by the supernet and the standalone subnet.

An elastic kernel is a mask on the largest kernel (its centre), so every kernel size shares one
compiled graph. The depthwise convolution's forms, and the rule that picks one per layer, are in
`supernet/depthwise.py`; the standalone model used for export keeps a real depthwise
convolution (TFLite's DEPTHWISE_CONV_2D).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from hwnas.supernet.depthwise import pad_same, tap_window

BN_EPS = 1e-5
BN_MOMENTUM = 0.9


def hswish(x: jax.Array) -> jax.Array:
    return x * jnp.clip(x + 3.0, 0.0, 6.0) / 6.0


def hsigmoid(x: jax.Array) -> jax.Array:
    return jnp.clip(x + 3.0, 0.0, 6.0) / 6.0


def activation(name: str):
    return {"relu": jax.nn.relu, "hswish": hswish}[name]


def center_kernel(w: jax.Array, k: int) -> jax.Array:
    """The centre k x k of a (K, K, C) kernel: smaller kernels share the larger one's centre."""
    start = (w.shape[0] - k) // 2
    return w[start : start + k, start : start + k]


def kernel_mask(k_max: int, k: int | jax.Array | np.ndarray) -> jax.Array:
    """(k_max, k_max) mask selecting the centre k x k taps (k may be traced)."""
    d = jnp.abs(jnp.arange(k_max) - k_max // 2)
    inside = d <= k // 2
    return (inside[:, None] & inside[None, :]).astype(jnp.float32)


def batch_norm(x, scale, bias, mean, var, train: bool):
    """BatchNorm over (B, H, W) or (B,); returns (y, (batch_mean, batch_var)).

    In training the batch moments normalise and are returned for the running averages; in
    evaluation the running `mean`/`var` normalise and are returned unchanged.
    """
    if train:
        y, mean, var = _batch_norm_train(x, scale, bias)
        return y, (mean, var)
    return (x - mean) * (scale * lax.rsqrt(var + BN_EPS)) + bias, (mean, var)


@jax.custom_vjp
def _batch_norm_train(x, scale, bias):
    axes = tuple(range(x.ndim - 1))
    mean = jnp.mean(x, axes)
    var = jnp.maximum(jnp.mean(jnp.square(x), axes) - jnp.square(mean), 0.0)
    return (x - mean) * (scale * lax.rsqrt(var + BN_EPS)) + bias, mean, var


def _batch_norm_fwd(x, scale, bias):
    y, mean, var = _batch_norm_train(x, scale, bias)
    return (y, mean, var), (x, scale, mean, lax.rsqrt(var + BN_EPS))


def _batch_norm_bwd(res, cts):
    """The textbook BatchNorm backward (two reductions, one elementwise pass); the batch
    moments are statistics for the running averages, so their cotangents are ignored."""
    x, scale, mean, rstd = res
    dy = cts[0]
    axes = tuple(range(x.ndim - 1))
    n = x.size // x.shape[-1]
    xhat = (x - mean) * rstd
    dbias = jnp.sum(dy, axes)
    dscale = jnp.sum(dy * xhat, axes)
    dx = (scale * rstd / n) * (n * dy - dbias - xhat * dscale)
    return dx, dscale, dbias


_batch_norm_train.defvjp(_batch_norm_fwd, _batch_norm_bwd)


@jax.custom_vjp
def conv1x1(x: jax.Array, w: jax.Array) -> jax.Array:
    """A pointwise convolution: a matmul over the channel axis (x: (..., c), w: (c, d)).

    The backward pass is written out: autodiff's weight gradient made XLA on CPU lay the output
    gradient out channel-major, recomputing the BatchNorm backward that produces it in that
    transposed order (at 32x112x112x96: 700 ms for the 1x1 conv + BatchNorm + hard-swish
    gradient, 270 ms with this one).
    """
    return jnp.einsum("...c,cd->...d", x, w)


def _conv1x1_fwd(x, w):
    return conv1x1(x, w), (x, w)


def _conv1x1_bwd(res, g):
    x, w = res
    n = x.size // x.shape[-1]
    dw = lax.dot_general(x.reshape(n, -1), g.reshape(n, -1), (((0,), (0,)), ((), ())))
    return jnp.einsum("...d,cd->...c", g, w), dw


conv1x1.defvjp(_conv1x1_fwd, _conv1x1_bwd)


def patches(x: jax.Array, k: int, stride: int) -> jax.Array:
    """(B, H, W, C) -> (B, Ho, Wo, k*k*C): the SAME-padded k x k windows, (i, j, c) order, so
    that a (k, k, C, D) kernel reshaped to (k*k*C, D) turns the convolution into `conv1x1`."""
    xp = pad_same(x, k, stride)
    ho, wo = -(-x.shape[1] // stride), -(-x.shape[2] // stride)
    cols = [tap_window(xp, i, j, stride, ho, wo) for i in range(k) for j in range(k)]
    return jnp.concatenate(cols, axis=-1)
