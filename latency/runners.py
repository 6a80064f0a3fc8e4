"""Turn a job's payload into a zero-argument callable that runs one inference and blocks.

Only the target's runtime is imported, and only when a job needs it: `jax` for cpu/gpu (a
serialized `jax.export` module whose weights are arguments, filled with seeded random values,
which time exactly like the real ones for these dense float ops), `ai_edge_litert` for tflite
(the flatbuffer carries its real weights). The jitted cpu/gpu call closes over the weights, as a
deployed model's parameters are: passing the 250-300 weight arrays as arguments of every call
instead adds about 2 ms of dispatch (and its jitter) to a 3 ms model on these machines.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.latency.jobs import Job, JobFileError


class RuntimeUnavailable(RuntimeError):
    """The runtime or device a target needs is not on this machine."""


def gpu_name() -> str | None:
    import jax

    try:
        devices = jax.devices("gpu")
    except RuntimeError:
        return None
    return devices[0].device_kind if devices else None


def jax_runner(job: Job) -> Callable[[], object]:
    import jax

    try:
        device = jax.devices("gpu" if job.target.kind == "gpu" else "cpu")[0]
    except RuntimeError:
        raise RuntimeUnavailable(
            f"target {job.target.key} needs a {job.target.kind.upper()} JAX device and this "
            "machine has none"
        ) from None
    exported = jax.export.deserialize(bytearray(base64.b64decode(job.payload["blob"])))
    rng = np.random.default_rng(0)
    args = [
        jax.device_put(np.asarray(rng.normal(0.0, 0.05, a.shape), a.dtype), device)
        for a in exported.in_avals
    ]
    *weights, x = args
    fn = jax.jit(lambda inp: exported.call(weights, inp))

    def run() -> object:
        return fn(x).block_until_ready()

    return run


def load_tflite(job: Job, base: Path) -> bytes:
    path = base / job.payload["path"]
    try:
        data = path.read_bytes()
    except OSError as e:
        raise JobFileError(f"job {job.id}: cannot read {path}: {e.strerror}") from None
    if hashlib.sha256(data).hexdigest() != job.payload["sha256"]:
        raise JobFileError(f"job {job.id}: {path} does not match its sha256")
    return data


def tflite_interpreter(model: bytes, threads: int) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise RuntimeUnavailable(
            "the tflite target needs LiteRT (ai-edge-litert): pip install 'hwnas[export]'"
        ) from None
    it = Interpreter(model_content=model, num_threads=threads)
    it.allocate_tensors()
    return it


def tflite_runner(job: Job, base: Path) -> Callable[[], object]:
    it = tflite_interpreter(load_tflite(job, base), job.target.threads)
    inp = it.get_input_details()[0]
    rng = np.random.default_rng(0)
    if np.issubdtype(inp["dtype"], np.integer):
        x = rng.integers(-128, 128, inp["shape"]).astype(inp["dtype"])
    else:
        x = rng.normal(0.0, 1.0, inp["shape"]).astype(inp["dtype"])
    it.set_tensor(inp["index"], x)
    return it.invoke


def make_runner(job: Job, base: Path) -> Callable[[], object]:
    if job.payload["type"] == "tflite":
        return tflite_runner(job, base)
    return jax_runner(job)


def tflite_ops(model: bytes) -> list[str]:
    """The model's operators as LiteRT lists them (without delegation), sorted, distinct."""
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        raise RuntimeUnavailable(
            "listing tflite ops needs LiteRT (ai-edge-litert): pip install 'hwnas[export]'"
        ) from None
    it = Interpreter(
        model_content=model,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    return sorted({op["op_name"] for op in it._get_ops_details()})
