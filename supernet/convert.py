"""A subnet's standalone model -> a TFLite flatbuffer (fp32, fp16 or int8), builtin ops only.

The path is jax2tf (native serialization) -> `tf.function` with a fixed input signature ->
`TFLiteConverter.from_concrete_functions`. The weights are closed over, so they become constants
of the graph. Only TFLite builtin ops are allowed (no Flex/select TF ops): a model that needs
one fails to convert instead of shipping something a plain LiteRT runtime cannot run. int8 is
full-integer post-training quantisation calibrated on a representative dataset (training images
at the subnet's resolution); fp16 stores the weights in half precision.

TensorFlow is imported only inside these functions: it is heavy and only conversion needs it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import flax.linen as nn
import jax
import numpy as np

from hwnas.extras import require
from hwnas.supernet.extract import StandaloneNet
from hwnas.supernet.space import SearchSpace, Subnet

PRECISIONS = ("fp32", "fp16", "int8")


class ConversionError(RuntimeError):
    """The converter refused the model (or it needs non-builtin ops)."""


@dataclass(frozen=True)
class Converted:
    """A converted model and what it expects."""

    flatbuffer: bytes
    precision: str
    input_shape: tuple[int, ...]
    int8_io: bool


def _tf_function(module: nn.Module, variables: dict, shape: tuple[int, ...]):
    require("export", "converting a subnet to TFLite")
    import tensorflow as tf
    from jax.experimental import jax2tf

    host = jax.device_get(variables)

    def forward(x):
        return module.apply(host, x)

    fn = tf.function(
        jax2tf.convert(forward, with_gradient=False, native_serialization_platforms=("cpu",)),
        input_signature=[tf.TensorSpec(shape, tf.float32, name="input")],
        autograph=False,
    )
    return fn


def _input_shape(space: SearchSpace, module: nn.Module) -> tuple[int, ...]:
    if isinstance(module, StandaloneNet):
        r = module.subnet.resolution
        return (1, r, r, space.in_channels)
    layer = module.layer
    return (1, layer.h_in, layer.h_in, layer.c_in)


def to_tflite(
    space: SearchSpace,
    subnet: Subnet | None,
    variables: dict,
    precision: str = "fp32",
    representative: Iterable[np.ndarray] | None = None,
    int8_io: bool = False,
    module: nn.Module | None = None,
) -> Converted:
    """Convert `subnet` with its standalone `variables` (BN recalibrated) to TFLite.

    Args:
        representative: float32 images (R, R, C) at the subnet's resolution, normalised as in
            training; required for int8.
        int8_io: int8 input and output tensors (int8 only), for integer-only runtimes.
        module: convert this module instead of the subnet's `StandaloneNet` (a single block
            for the lookup-table baseline); its input is (1, H, H, C) of `variables`' first
            layer.
    """
    require("export", "converting a subnet to TFLite")
    import tensorflow as tf

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    samples: list[np.ndarray] = []
    if precision == "int8":
        if representative is None:
            raise ValueError("int8 conversion needs a representative dataset")
        samples = [np.asarray(x, np.float32)[None] for x in representative]
    if int8_io and precision != "int8":
        raise ValueError("int8 input/output needs precision int8")
    if module is None:
        if subnet is None:
            raise ValueError("conversion needs a subnet or a module")
        module = StandaloneNet(space, subnet)
    shape = _input_shape(space, module)
    fn = _tf_function(module, variables, shape)
    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    if precision == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x] for x in samples)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
    try:
        with warnings.catch_warnings():
            # int8 is calibrated by the representative dataset above; TF asks for input
            # statistics that only a model trained with quantised inputs would have
            warnings.filterwarnings("ignore", "Statistics for quantized inputs were expected")
            flatbuffer = conv.convert()
    except Exception as e:  # the converter raises several unrelated types
        name = subnet.key if subnet is not None else type(module).__name__
        raise ConversionError(f"TFLite conversion of {name} failed: {e}") from e
    return Converted(bytes(flatbuffer), precision, shape, int8_io)
