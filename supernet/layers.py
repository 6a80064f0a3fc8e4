"""Pure layer functions shared by the supernet and the standalone subnet.

XLA on CPU runs `feature_group_count=C` convolutions far below their FLOP count (DESIGN.md).
The supernet therefore computes a depthwise convolution as a per-channel matmul over spatial
positions: with feature maps of at most 8x8 (64 positions), the (positions x positions) matrix of
each channel is built from its k*k taps and a constant 0/1 shift tensor, and both the forward and
the backward pass become batched matmuls, which XLA runs near peak. An elastic kernel is a mask
on the largest kernel (its centre), so every kernel size shares one compiled graph. The
standalone model used for export keeps a real depthwise convolution (TFLite's
DEPTHWISE_CONV_2D); `depthwise_shift` is the fused shifted multiply-add form, kept for the
benchmark and for larger feature maps.
"""

from __future__ import annotations

import math
from functools import cache

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

BN_EPS = 1e-5
BN_MOMENTUM = 0.9


def hswish(x: jax.Array) -> jax.Array:
    return x * jnp.clip(x + 3.0, 0.0, 6.0) / 6.0


def hsigmoid(x: jax.Array) -> jax.Array:
    return jnp.clip(x + 3.0, 0.0, 6.0) / 6.0


def activation(name: str):
    return {"relu": jax.nn.relu, "hswish": hswish}[name]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow/XLA 'SAME' padding (before, after) for one spatial axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def center_kernel(w: jax.Array, k: int) -> jax.Array:
    """The centre k x k of a (K, K, C) kernel: smaller kernels share the larger one's centre."""
    start = (w.shape[0] - k) // 2
    return w[start : start + k, start : start + k]


def kernel_mask(k_max: int, k: jax.Array) -> jax.Array:
    """(k_max, k_max) mask selecting the centre k x k taps (k may be traced)."""
    d = jnp.abs(jnp.arange(k_max) - k_max // 2)
    inside = d <= k // 2
    return (inside[:, None] & inside[None, :]).astype(jnp.float32)


@cache
def shift_tensor(h: int, w: int, k: int, stride: int) -> np.ndarray:
    """S[i, j, p, q] = 1 where output position p reads input position q through tap (i, j),
    with SAME padding."""
    (pt, _), (pl, _) = same_padding(h, k, stride), same_padding(w, k, stride)
    ho, wo = math.ceil(h / stride), math.ceil(w / stride)
    s = np.zeros((k, k, ho * wo, h * w), np.float32)
    for i in range(k):
        for j in range(k):
            for oy in range(ho):
                y = oy * stride + i - pt
                if not 0 <= y < h:
                    continue
                for ox in range(wo):
                    x = ox * stride + j - pl
                    if 0 <= x < w:
                        s[i, j, oy * wo + ox, y * w + x] = 1.0
    return s


def depthwise_matmul(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
    """Depthwise convolution, SAME padding, as a per-channel spatial matmul.

    Args:
        x: (B, H, W, C) input.
        w: (k, k, C) per-channel kernel.
        stride: 1 or 2.
    """
    b, h, wd, c = x.shape
    k = w.shape[0]
    s = shift_tensor(h, wd, k, stride)
    t = jnp.einsum("ijc,ijpq->cpq", w, s)
    y = jnp.einsum("bqc,cpq->bpc", x.reshape(b, h * wd, c), t)
    return y.reshape(b, math.ceil(h / stride), math.ceil(wd / stride), c)


def depthwise_shift(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
    """Depthwise convolution, SAME padding, as k*k fused shifted multiply-adds.

    Args:
        x: (B, H, W, C) input.
        w: (k, k, C) per-channel kernel.
        stride: 1 or 2.
    """
    k = w.shape[0]
    b, h, wd, c = x.shape
    ph, pw = same_padding(h, k, stride), same_padding(wd, k, stride)
    xp = jnp.pad(x, ((0, 0), ph, pw, (0, 0)))
    ho, wo = math.ceil(h / stride), math.ceil(wd / stride)
    out = None
    for i in range(k):
        for j in range(k):
            limit = (b, i + (ho - 1) * stride + 1, j + (wo - 1) * stride + 1, c)
            term = lax.slice(xp, (0, i, j, 0), limit, (1, stride, stride, 1)) * w[i, j]
            out = term if out is None else out + term
    return out


def depthwise_conv(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
    """The same depthwise convolution as a real grouped convolution (for export)."""
    c = x.shape[-1]
    return lax.conv_general_dilated(
        x,
        w[:, :, None, :],
        (stride, stride),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=c,
    )


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
