"""Pure layer functions shared by the supernet and the standalone subnet.

An elastic kernel is a mask on the largest kernel (its centre), so every kernel size shares one
compiled graph. The depthwise convolution's forms, and the rule that picks one per layer, are in
`supernet/depthwise.py`; the standalone model used for export keeps a real depthwise
convolution (TFLite's DEPTHWISE_CONV_2D).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

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


def kernel_mask(k_max: int, k: jax.Array) -> jax.Array:
    """(k_max, k_max) mask selecting the centre k x k taps (k may be traced)."""
    d = jnp.abs(jnp.arange(k_max) - k_max // 2)
    inside = d <= k // 2
    return (inside[:, None] & inside[None, :]).astype(jnp.float32)


def batch_norm(x, scale, bias, mean, var, train: bool):
    """BatchNorm over (B, H, W) or (B,); returns (y, (batch_mean, batch_var)).

    In training the batch moments normalise and are returned for the running averages; in
    evaluation the running `mean`/`var` normalise and are returned unchanged.
    """
    axes = tuple(range(x.ndim - 1))
    if train:
        mean = jnp.mean(x, axes)
        var = jnp.mean(jnp.square(x), axes) - jnp.square(mean)
        var = jnp.maximum(var, 0.0)
    y = (x - mean) * (scale * lax.rsqrt(var + BN_EPS)) + bias
    return y, (mean, var)


def conv1x1(x: jax.Array, w: jax.Array) -> jax.Array:
    """A pointwise convolution: a matmul over the channel axis."""
    return jnp.einsum("bhwc,cd->bhwd", x, w)
