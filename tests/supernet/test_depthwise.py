"""The depthwise forms agree (forward and both gradients), the rule picks by size and backend,
and a 224-px space still trains with one compiled step per resolution."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hwnas.supernet import depthwise as dw
from hwnas.supernet import native
from hwnas.supernet.model import SuperNet, arch_arrays, stack_archs
from hwnas.supernet.space import SearchSpace
from hwnas.supernet.train_config import TrainConfig
from hwnas.supernet.train_step import create_train_state, make_optimizer, make_train_step

CASES = [  # (h, w, channels, kernel, stride): odd and even maps, both strides, every kernel
    (5, 5, 3, 3, 1),
    (6, 7, 4, 5, 2),
    (7, 7, 3, 7, 2),
    (9, 8, 5, 7, 1),
    (14, 14, 6, 7, 1),
    (15, 15, 4, 5, 2),
    (28, 28, 3, 3, 2),
    (12, 11, 24, 7, 2),  # channels in a vector of 16 and one of 8
    (10, 10, 40, 3, 1),
]
EDGE_CASES = [  # the native kernels' edges: even and one-wide kernels, kernels wider than the map
    pytest.param(1, 1, 3, 8, 2, id="k8-on-1x1"),
    pytest.param(2, 3, 17, 8, 2, id="k8-on-2x3-17ch"),
    pytest.param(3, 3, 9, 6, 1, id="k6-stride1"),
    pytest.param(4, 5, 3, 4, 2, id="k4-stride2"),
    pytest.param(5, 4, 3, 2, 2, id="k2"),
    pytest.param(3, 2, 4, 1, 2, id="k1"),
    pytest.param(2, 2, 8, 7, 1, id="k7-on-2x2"),
]


def _loss(form: str, stride: int):
    def loss(x, w):
        # a nonlinear loss so the output gradient differs everywhere
        return jnp.sum(jnp.sin(dw.depthwise(x, w, stride, form)))

    return loss


def _inputs(h, w, c, k):
    rng = np.random.default_rng(h * 100 + w * 10 + k)
    x = rng.normal(size=(2, h, w, c)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(rng.normal(size=(k, k, c)).astype(np.float32))


def _close(a, b) -> float:
    """Largest difference relative to the reference's largest magnitude."""
    return float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1.0))


needs_native = pytest.mark.skipif(not native.available(), reason="no C++ compiler here")


@pytest.mark.parametrize("form", ["matmul", "shift", pytest.param("native", marks=needs_native)])
@pytest.mark.parametrize(("h", "w", "c", "k", "stride"), CASES)
def test_forms_agree_with_the_grouped_convolution(form, h, w, c, k, stride):
    x, wk = _inputs(h, w, c, k)
    ref = dw.depthwise(x, wk, stride, "conv")
    got = dw.depthwise(x, wk, stride, form)
    assert got.shape == ref.shape == (2, -(-h // stride), -(-w // stride), c)
    assert _close(got, ref) < 1e-5
    g_ref = jax.grad(_loss("conv", stride), argnums=(0, 1))(x, wk)
    g_got = jax.jit(jax.grad(_loss(form, stride), argnums=(0, 1)))(x, wk)
    assert _close(g_got[0], g_ref[0]) < 1e-5  # input gradient
    assert _close(g_got[1], g_ref[1]) < 1e-5  # weight gradient


@needs_native
@pytest.mark.parametrize(("h", "w", "c", "k", "stride"), EDGE_CASES)
def test_native_kernels_agree_at_their_edges(h, w, c, k, stride):
    test_forms_agree_with_the_grouped_convolution("native", h, w, c, k, stride)


def test_shift_gradient_is_its_own_not_autodiffs():
    """The shifted form's backward pass is the hand-written one (the fast one)."""
    x, wk = _inputs(9, 9, 3, 5)
    jaxpr = str(jax.make_jaxpr(jax.grad(_loss("shift", 1), argnums=1))(x, wk))
    assert "custom_vjp" in jaxpr
    assert "dot_general" in jaxpr  # the weight gradient's row matmuls


@pytest.mark.parametrize(
    ("h", "w", "backend", "native_ok", "form"),
    [
        (7, 7, "cpu", True, "native"),
        (112, 112, "cpu", True, "native"),
        (7, 7, "cpu", False, "matmul"),
        (14, 14, "cpu", False, "matmul"),
        (20, 20, "cpu", False, "matmul"),
        (21, 21, "cpu", False, "shift"),
        (28, 28, "cpu", False, "shift"),
        (112, 112, "cpu", False, "shift"),
        (7, 7, "gpu", True, "conv"),
        (112, 112, "gpu", False, "conv"),
        (14, 14, "tpu", True, "conv"),
    ],
)
def test_the_form_follows_map_size_backend_and_the_kernels(h, w, backend, native_ok, form):
    assert dw.choose(h, w, backend, native_ok) == form


def test_unknown_form_is_refused():
    x, wk = _inputs(5, 5, 3, 3)
    with pytest.raises(ValueError, match="unknown depthwise form"):
        dw.depthwise(x, wk, 1, "fft")


NARROW_224 = SearchSpace.from_file(Path(__file__).parent.parent / "data" / "narrow_224.json")


def test_one_compile_for_every_subnet_at_224_px():
    """Maps of 112x112 down to 28x28: shift and matmul forms and rematerialised blocks in one
    step, compiled once whatever the subnets (once per resolution: `test_train.py`, at the
    tiny space's sizes)."""
    space, config = NARROW_224, TrainConfig(batch_size=2)
    net, tx = SuperNet(space), make_optimizer(config, 10)
    state, step = create_train_state(net, tx, 0), make_train_step(net, tx)
    rng = np.random.default_rng(0)
    keys = set()
    for r in (224, 224, 224):
        subnets = [space.sample(rng) for _ in range(3)]
        subnets = [space.subnet(r, s.depths, s.kernels, s.expands) for s in subnets]
        keys |= {s.key for s in subnets}
        archs = stack_archs([arch_arrays(space, s) for s in subnets])
        x = rng.normal(size=(2, r, r, 3)).astype(np.float32)
        state, metrics = step(state, x, np.array([0, 1], np.int32), archs)
        assert np.isfinite(metrics["loss"])
    assert len(keys) > 2
    assert step._cache_size() == 1
