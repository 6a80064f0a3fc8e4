"""A subnet ready to ship: BatchNorm recalibrated for it, sliced out of the supernet, and the
contract its exported input follows.

Once-for-All users hit this (OFA #11, #51): a subnet sliced with the supernet's running
BatchNorm statistics is wrong; its statistics must be recomputed for it first. Here they are
the mean batch moments on the run's fixed calibration batches, exactly as every accuracy the
search reports was computed, so the shipped model is the model the search scored.
"""

from __future__ import annotations

import jax
import numpy as np

from hwnas.supernet.evaluate import Evaluator, eval_batch, resized_calibration
from hwnas.supernet.extract import StandaloneNet, standalone
from hwnas.supernet.model import SuperNet, arch_arrays
from hwnas.supernet.space import SearchSpace, Subnet
from hwnas.supernet.train_step import MEAN, STD


def recalibrated_standalone(
    space: SearchSpace, variables: dict, subnet: Subnet, train_u8: np.ndarray, config
) -> tuple[StandaloneNet, dict]:
    """The standalone model of `subnet` with BatchNorm statistics recomputed for it on the
    run's calibration batches (`config`: the run's TrainConfig)."""
    ev = Evaluator.for_net(SuperNet(space))
    calib = resized_calibration(train_u8, subnet.resolution, config)
    stats = ev.recalibrate(variables, arch_arrays(space, subnet), calib)
    return standalone(space, subnet, {"params": variables["params"], "batch_stats": stats})


def jax_logits(module: StandaloneNet, variables: dict, x: np.ndarray) -> np.ndarray:
    """Logits of the standalone model for all of `x` (normalised, at its resolution)."""
    fn = jax.jit(lambda v, b: module.apply(v, b))
    out, n = [], eval_batch(x.shape[1])
    for i in range(0, len(x), n):
        out.append(np.asarray(fn(variables, x[i : i + n])))
    return np.concatenate(out)


def preprocessing(space: SearchSpace, resolution: int) -> dict:
    """How raw pixels become the float input the model was trained on."""
    c = space.in_channels
    return {
        "from": f"uint8 pixels, height x width x {c}, channels in RGB order",
        "resize": {
            "size": [resolution, resolution],
            "method": "bilinear",
            "half_pixel_centers": True,
            "align_corners": False,
            "antialias": True,
        },
        "scale": 1 / 255,
        "mean": [MEAN] * c,
        "std": [STD] * c,
        "formula": "x = (pixel * scale - mean) / std, per channel, after resizing",
        "layout": "NHWC, batch 1",
    }


def input_contract(space: SearchSpace, subnet: Subnet, io: dict, labels) -> dict:
    """What the exported model expects and returns: `io` is the interpreter's own input and
    output details (shape, dtype, quantisation), as `litert_io` reads them."""
    return {
        "shape": io["input"]["shape"],
        "dtype": io["input"]["dtype"],
        "quantization": io["input"]["quantization"],
        "preprocessing": preprocessing(space, subnet.resolution),
        "quantize": _quantize_note(io["input"]["quantization"]),
        "output": io["output"] | {"meaning": "logits; softmax gives class probabilities"},
        "labels": list(labels),
    }


def _quantize_note(q: dict | None) -> str | None:
    if q is None:
        return None
    return "q = clip(round(x / scale) + zero_point, -128, 127) as int8, x as preprocessed above"
