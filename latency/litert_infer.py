"""Run an exported `.tflite` on images with LiteRT, as a user's device would.

Quantised (int8) input and output tensors are quantised and dequantised with the model's own
parameters, so the logits are comparable with JAX's whatever the precision.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike

from hwnas.latency.runners import tflite_interpreter


def _quant(detail: dict) -> dict | None:
    scale, zero = detail["quantization"]
    if scale == 0:
        return None
    return {"scale": float(scale), "zero_point": int(zero)}


def _describe(detail: dict) -> dict:
    return {
        "name": detail["name"],
        "shape": [int(v) for v in detail["shape"]],
        "dtype": np.dtype(detail["dtype"]).name,
        "quantization": _quant(detail),
    }


def litert_io(model: bytes) -> dict:
    """The model's input and output tensors as LiteRT reports them."""
    it = tflite_interpreter(model, 1)
    return {
        "input": _describe(it.get_input_details()[0]),
        "output": _describe(it.get_output_details()[0]),
    }


def quantize(x: np.ndarray, q: dict, dtype: DTypeLike) -> np.ndarray:
    info = np.iinfo(dtype)
    v = np.round(x / q["scale"]) + q["zero_point"]
    return np.clip(v, info.min, info.max).astype(dtype)


def litert_logits(model: bytes, x: np.ndarray) -> np.ndarray:
    """Float logits for every image of `x` (normalised float32, N x R x R x C), one invoke
    each (the model's batch is 1)."""
    it = tflite_interpreter(model, 1)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    qin, qout = _quant(inp), _quant(out)
    rows = []
    for img in x:
        batch = img[None].astype(np.float32)
        if qin is not None and np.issubdtype(inp["dtype"], np.integer):
            batch = quantize(batch, qin, inp["dtype"])
        it.set_tensor(inp["index"], batch)
        it.invoke()
        y = it.get_tensor(out["index"])
        if qout is not None and np.issubdtype(out["dtype"], np.integer):
            y = (y.astype(np.float32) - qout["zero_point"]) * qout["scale"]
        rows.append(np.asarray(y, np.float32)[0])
    return np.stack(rows)
