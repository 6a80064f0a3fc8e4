"""Depthwise convolution (SAME padding) in four forms, and the rule that picks one per layer.

XLA on CPU runs `feature_group_count=C` convolutions far below their FLOP count (the `conv`
column below: 3-31x the time of XLA's other forms), so the supernet's training step chooses each
layer's form from its static input size, its kernel and the backend (`choose`):

- `native`: hand-written CPU kernels (`supernet/native/depthwise.cc`, built on first use by
  `supernet/native.py`, called through XLA's FFI): forward, input gradient and weight
  gradient as loops over channel vectors whose accumulators stay in registers, split over
  XLA's threads. On CPU every layer takes it wherever the kernels build (one device, kernels
  up to 8 wide); XLA's forms below are the fallback and the reference.
- `matmul`: a per-channel matmul over spatial positions. The (positions x positions) matrix of
  each channel is built from its k*k taps and a constant 0/1 shift tensor, so forward and
  backward are batched matmuls. The constant grows with positions squared: small maps only.
- `shift`: k*k fused shifted multiply-adds, with a hand-written backward pass. Autodiff's own
  backward of the shifted slices is slow on XLA CPU: the weight gradient becomes k*k
  reductions of a sliced product, and a reduction with a fused slice ran 4.5x slower than
  one without (22.9 ms against 5.0 ms at 32x56x56x144). Here the input gradient is the same
  shifted multiply-add over the (dilated) output gradient with the flipped kernel, and the
  weight gradient is one batched matmul per kernel row over (batch, rows), whose diagonals
  are the taps (9x the useful MACs at 56x56, run at about 24 GMAC/s).
- `conv`: XLA's grouped convolution; cuDNN's depthwise kernels on a GPU, and TFLite's
  DEPTHWISE_CONV_2D in the exported model.

Measured on this 2-core CPU (jax 0.10.2, batch 32, kernel 7, forward + both gradients, median
after a warm-up; `python bench/depthwise_forms.py --forms matmul,shift,native`), ms, all three
in one run on 2026-12-04 (3 repeats); `conv` from 2026-12-01 (5 repeats):

    input      channels stride   matmul   shift    native   conv
    7x7        960      1        37.7     181.9    10.4     1183.1
    14x14      480      1        158.8    314.1    30.8     1276.9
    14x14      672      2        74.9     146.3    11.0     1236.0
    28x28      240      1        980.8    602.0    34.2     1932.5
    28x28      144      2        155.8    96.9     11.5     862.4
    56x56      144      1        -        1264.8   106.2    10031.4
    112x112    96       2        -        1028.8   120.0    10537.7

So on CPU the native kernels win at every size (3.6-18x the best XLA form). Without them the
matmul form wins up to 14x14 inputs and the shifted form from 28x28; `MATMUL_MAX_POSITIONS`
sits between. On a GPU every layer takes the grouped convolution.
"""

from __future__ import annotations

import itertools
import math
from functools import cache, partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from hwnas.supernet import native

FORMS = ("matmul", "shift", "native", "conv")
MATMUL_MAX_POSITIONS = 400  # 20x20: above 14x14 (matmul wins), below 28x28 (shift wins)


def choose(
    h: int,
    w: int,
    backend: str | None = None,
    native_ok: bool | None = None,
    kernel: int = 7,
    dtype=jnp.float32,
) -> str:
    """The depthwise form for an (h, w) input map, a `kernel`-wide kernel and `dtype` on
    `backend` (default: JAX's).

    `native_ok` (default: the kernels are built, float32, the kernel is at most
    `native.MAX_KERNEL` and there is one device) says whether the native kernels may run: they
    are not partitioned, so a multi-device mesh keeps XLA's forms.
    """
    backend = backend or jax.default_backend()
    if backend != "cpu":
        return "conv"
    if native_ok is None:
        fits = kernel <= native.MAX_KERNEL and jnp.dtype(dtype) == jnp.float32
        native_ok = fits and jax.device_count() == 1 and native.available()
    if native_ok:
        return "native"
    return "matmul" if h * w <= MATMUL_MAX_POSITIONS else "shift"


def depthwise(x: jax.Array, w: jax.Array, stride: int, form: str | None = None) -> jax.Array:
    """Depthwise convolution, SAME padding, in `form` (default: `choose`'s for x's map).

    Args:
        x: (B, H, W, C) input.
        w: (k, k, C) per-channel kernel.
        stride: 1 or 2.
        form: one of `FORMS`, or None to choose by size and backend.
    """
    form = form or choose(x.shape[1], x.shape[2], kernel=w.shape[0], dtype=x.dtype)
    if form == "matmul":
        return depthwise_matmul(x, w, stride)
    if form == "shift":
        return depthwise_shift(x, w, stride)
    if form == "native":
        return depthwise_native(x, w, stride)
    if form == "conv":
        return depthwise_conv(x, w, stride)
    raise ValueError(f"unknown depthwise form {form!r}; choose one of {FORMS}")


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow/XLA 'SAME' padding (before, after) for one spatial axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


# ---- matmul ---------------------------------------------------------------------------------
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
    """Depthwise convolution as a per-channel spatial matmul (small maps)."""
    b, h, wd, c = x.shape
    k = w.shape[0]
    s = shift_tensor(h, wd, k, stride)
    t = jnp.einsum("ijc,ijpq->cpq", w, s)
    y = jnp.einsum("bqc,cpq->bpc", x.reshape(b, h * wd, c), t)
    return y.reshape(b, math.ceil(h / stride), math.ceil(wd / stride), c)


# ---- shift ----------------------------------------------------------------------------------
def pad_same(x: jax.Array, k: int, stride: int) -> jax.Array:
    ph, pw = same_padding(x.shape[1], k, stride), same_padding(x.shape[2], k, stride)
    return jnp.pad(x, ((0, 0), ph, pw, (0, 0)))


def tap_window(xp: jax.Array, i: int, j: int, stride: int, ho: int, wo: int) -> jax.Array:
    """The (ho, wo) input positions that tap (i, j) reads from the padded input `xp`."""
    limit = (xp.shape[0], i + (ho - 1) * stride + 1, j + (wo - 1) * stride + 1, xp.shape[-1])
    return lax.slice(xp, (0, i, j, 0), limit, (1, stride, stride, 1))


def _taps(xp: jax.Array, w: jax.Array, stride: int, ho: int, wo: int) -> jax.Array:
    """Valid (unpadded) strided correlation of `xp` with w: k*k shifted multiply-adds."""
    k = w.shape[0]
    out = tap_window(xp, 0, 0, stride, ho, wo) * w[0, 0]
    for i, j in itertools.product(range(k), range(k)):
        if (i, j) != (0, 0):
            out = out + tap_window(xp, i, j, stride, ho, wo) * w[i, j]
    return out


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def depthwise_shift(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
    """Depthwise convolution as k*k fused shifted multiply-adds (larger maps on CPU)."""
    k, h, wd = w.shape[0], x.shape[1], x.shape[2]
    return _taps(pad_same(x, k, stride), w, stride, math.ceil(h / stride), math.ceil(wd / stride))


def _shift_fwd(x, w, stride):
    return depthwise_shift(x, w, stride), (x, w)


def _shift_bwd(stride, res, g):
    x, w = res
    return _input_grad(g, w, x.shape, stride), _weight_grad(x, g, w.shape[0], stride)


depthwise_shift.defvjp(_shift_fwd, _shift_bwd)


def _input_grad(g: jax.Array, w: jax.Array, x_shape: tuple, stride: int) -> jax.Array:
    """dL/dx: the output gradient, dilated by the stride and padded, correlated with the
    flipped kernel (a shifted multiply-add like the forward pass)."""
    _, h, wd, _ = x_shape
    k = w.shape[0]
    (pt, _), (pl, _) = same_padding(h, k, stride), same_padding(wd, k, stride)
    ho, wo = g.shape[1], g.shape[2]

    def after(size: int, top: int, out: int) -> int:
        # room so that the padded input's rows top..top+size+k-1 all exist
        return max(top + size - (out - 1) * stride - 1, 0)

    gd = lax.pad(
        g,
        jnp.zeros((), g.dtype),
        (
            (0, 0, 0),
            (k - 1, after(h, pt, ho), stride - 1),
            (k - 1, after(wd, pl, wo), stride - 1),
            (0, 0, 0),
        ),
    )
    gd = gd[:, pt : pt + h + k - 1, pl : pl + wd + k - 1]
    return _taps(gd, w[::-1, ::-1], 1, h, wd)


def _weight_grad(x: jax.Array, g: jax.Array, k: int, stride: int) -> jax.Array:
    """dL/dw[i, j, c] = sum over (b, y, x) of xp[b, s*y + i, s*x + j, c] * g[b, y, x, c].

    Per kernel row i, one matmul per channel contracts (batch, output row) and gives every
    (input column, output column) pair; tap (i, j) is the diagonal input column = s*x + j.
    The rows run in a `lax.scan`, so one row's operands exist at a time (as a Python loop,
    XLA kept all k of them live: 5-10x the input's size in temporaries).
    """
    xp = pad_same(x, k, stride)
    b, ho, wo, c = g.shape
    wp = xp.shape[2]
    xt = jnp.transpose(xp, (3, 0, 1, 2))  # (c, b, rows, columns)
    gt = jnp.transpose(g, (3, 0, 1, 2)).reshape(c, b * ho, wo)
    cols = jnp.arange(wo)
    span = (ho - 1) * stride + 1

    def row(carry, i):
        r = lax.dynamic_slice_in_dim(xt, i, span, axis=2)[:, :, ::stride]
        m = jnp.einsum("cnX,cnx->cXx", r.reshape(c, b * ho, wp), gt)
        return carry, jnp.stack([m[:, j + stride * cols, cols].sum(-1) for j in range(k)])

    return lax.scan(row, None, jnp.arange(k))[1]


# ---- native ---------------------------------------------------------------------------------
def _native_call(
    target: str,
    a: jax.Array,
    b: jax.Array,
    out_shape: tuple,
    stride: int,
    k: int,
    hw: tuple[int, int],
) -> jax.Array:
    if not native.available():  # builds and registers them on first use
        raise RuntimeError("the native depthwise kernels could not be built here (see the log)")
    (pt, _), (pl, _) = same_padding(hw[0], k, stride), same_padding(hw[1], k, stride)
    out = jax.ShapeDtypeStruct(out_shape, jnp.float32)
    call = jax.ffi.ffi_call(target, out, vmap_method="sequential")
    return call(a, b, stride=np.int64(stride), pad_top=np.int64(pt), pad_left=np.int64(pl))


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def depthwise_native(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
    """Depthwise convolution by the hand-written CPU kernels of `supernet/native.py`."""
    k = w.shape[0]
    if k > native.MAX_KERNEL:
        raise ValueError(f"the native depthwise kernels take kernels up to {native.MAX_KERNEL}")
    f32 = x.dtype == w.dtype == jnp.float32
    if x.ndim != 4 or w.shape != (k, k, x.shape[-1]) or not f32:
        raise ValueError("the native depthwise kernels take float32 x (B, H, W, C), w (k, k, C)")
    b, h, wd, c = x.shape
    out = (b, math.ceil(h / stride), math.ceil(wd / stride), c)
    return _native_call("hwnas_depthwise_forward", x, w, out, stride, k, (h, wd))


def _native_fwd(x, w, stride):
    return depthwise_native(x, w, stride), (x, w)


def _native_bwd(stride, res, g):
    x, w = res
    k, hw = w.shape[0], x.shape[1:3]
    dx = _native_call("hwnas_depthwise_input_grad", g, w, x.shape, stride, k, hw)
    dw = _native_call("hwnas_depthwise_weight_grad", x, g, w.shape, stride, k, hw)
    return dx, dw


depthwise_native.defvjp(_native_fwd, _native_bwd)


# ---- conv -----------------------------------------------------------------------------------
def depthwise_conv(x: jax.Array, w: jax.Array, stride: int) -> jax.Array:
    """The same depthwise convolution as a real grouped convolution (GPU, export)."""
    c = x.shape[-1]
    return lax.conv_general_dilated(
        x,
        w[:, :, None, :],
        (stride, stride),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=c,
    )
