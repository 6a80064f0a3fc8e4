"""TFLite conversion of standalone subnets: builtin ops only, real depthwise, fp32 parity."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

from hwnas.latency.runners import tflite_interpreter, tflite_ops
from hwnas.supernet.convert import ConversionError, to_tflite
from hwnas.supernet.extract import StandaloneNet
from hwnas.supernet.space import SearchSpace

TINY = Path(__file__).parent.parent / "data" / "tiny_space.json"


@pytest.fixture(scope="module")
def model():
    space = SearchSpace.from_file(TINY)
    subnet = space.largest()
    net = StandaloneNet(space, subnet)
    x = np.random.default_rng(0).normal(size=(4, 10, 10, 3)).astype(np.float32)
    init = net.init(jax.random.key(0), x[:1])
    # non-trivial BatchNorm statistics, as after recalibration
    stats = jax.tree.map(lambda a: a + 0.5, init["batch_stats"])
    variables = {"params": init["params"], "batch_stats": stats}
    return space, subnet, net, variables, x, init


def run_tflite(flatbuffer: bytes, x: np.ndarray) -> np.ndarray:
    it = tflite_interpreter(flatbuffer, 1)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    rows = []
    for xi in x:
        it.set_tensor(inp["index"], xi[None])
        it.invoke()
        rows.append(it.get_tensor(out["index"])[0].copy())
    return np.stack(rows)


def test_fp32_builtin_ops_and_parity(model):
    space, subnet, net, variables, x, _ = model
    c = to_tflite(space, subnet, variables)
    ops = tflite_ops(c.flatbuffer)
    assert "DEPTHWISE_CONV_2D" in ops and "CONV_2D" in ops
    assert not any("FLEX" in op or "CUSTOM" in op for op in ops)
    want = np.asarray(net.apply(variables, x))
    assert 0.1 < np.abs(want).max() < 100  # a meaningful scale for an absolute tolerance
    np.testing.assert_allclose(run_tflite(c.flatbuffer, x), want, atol=1e-4)
    assert c.input_shape == (1, 10, 10, 3)


def test_int8_is_quantised(model):
    space, subnet, _, _, x, init = model
    c = to_tflite(space, subnet, init, "int8", list(x), int8_io=True)
    ops = tflite_ops(c.flatbuffer)
    assert "DEPTHWISE_CONV_2D" in ops
    it = tflite_interpreter(c.flatbuffer, 1)
    assert it.get_input_details()[0]["dtype"] == np.int8
    assert it.get_output_details()[0]["dtype"] == np.int8


def test_bad_requests(model):
    space, subnet, _, variables, _, _ = model
    with pytest.raises(ValueError, match="precision"):
        to_tflite(space, subnet, variables, "fp8")
    with pytest.raises(ValueError, match="representative"):
        to_tflite(space, subnet, variables, "int8")
    with pytest.raises(ValueError, match="int8 input"):
        to_tflite(space, subnet, variables, "fp32", int8_io=True)
    assert issubclass(ConversionError, RuntimeError)
