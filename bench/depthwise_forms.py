"""Depthwise convolution forms side by side: forward + both gradients, ms per call.

Run from the repository root:

    PYTHONPATH=. python bench/depthwise_forms.py [--batch 32] [--kernel 7] [--repeats 5]
        [--forms matmul,shift,conv] [--shapes 14x14x480s1,56x56x144s1] [--out FILE]

For each input shape (height x width x channels, stride) and each form of
`hwnas.supernet.depthwise` it compiles `value_and_grad` of sum(depthwise(x, w) * r) with respect to
x and w (a fixed random cotangent r, so every output element matters), then times the median
of `--repeats` calls after a warm-up, all forms of one shape measured in alternation so machine
noise hits them alike. The matmul form is skipped above `--matmul-max` positions (its constant
grows with positions squared). These are the figures in `supernet/depthwise.py`'s docstring,
from which `choose` picks a form per layer. A table goes to stderr and one JSON object is the
last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from hwnas.supernet.compile_cache import enable_compile_cache
from hwnas.supernet.depthwise import FORMS, depthwise

SHAPES = (
    "7x7x960s1",
    "14x14x480s1",
    "14x14x672s2",
    "28x28x240s1",
    "28x28x144s2",
    "56x56x144s1",
    "112x112x96s2",
)


def parse_shape(text: str) -> tuple[int, int, int, int]:
    """'56x56x144s1' -> (56, 56, 144, 1)."""
    try:
        dims, stride = text.split("s")
        h, w, c = (int(v) for v in dims.split("x"))
        return h, w, c, int(stride)
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"shape {text!r}: write HxWxCsS, e.g. 56x56x144s1"
        ) from err


def grad_fn(form: str, stride: int):
    def loss(x, w, r):
        return jnp.sum(depthwise(x, w, stride, form) * r)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def timed(fn, args, repeats: int) -> list[float]:
    jax.block_until_ready(fn(*args))  # compile and warm up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def measure_shape(shape, forms, args) -> dict[str, float | None]:
    h, w, c, s = shape
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(args.batch, h, w, c)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(args.kernel, args.kernel, c)), jnp.float32)
    out_h, out_w = -(-h // s), -(-w // s)
    r = jnp.asarray(rng.normal(size=(args.batch, out_h, out_w, c)), jnp.float32)
    run = [f for f in forms if f != "matmul" or h * w <= args.matmul_max]
    fns = {f: grad_fn(f, s) for f in run}
    samples: dict[str, list[float]] = {f: [] for f in run}
    for _ in range(args.repeats):  # alternate forms, one call each per round
        for f in run:
            samples[f] += timed(fns[f], (x, k, r), 1)
    return {f: (statistics.median(samples[f]) if f in samples else None) for f in forms}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--kernel", type=int, default=7)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--forms", default=",".join(FORMS), help="comma-separated forms")
    p.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated HxWxCsS")
    p.add_argument("--matmul-max", type=int, default=28 * 28, help="largest map for matmul")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    forms = args.forms.split(",")
    bad = [f for f in forms if f not in FORMS]
    if bad:
        p.error(f"unknown form {bad[0]!r}: choose from {', '.join(FORMS)}")
    shapes = [parse_shape(s) for s in args.shapes.split(",")]
    enable_compile_cache()
    rows = []
    print(
        f"{'input':>10} {'ch':>5} {'s':>2} " + " ".join(f"{f:>9}" for f in forms), file=sys.stderr
    )
    for shape in shapes:
        ms = measure_shape(shape, forms, args)
        h, w, c, s = shape
        rows.append({"h": h, "w": w, "channels": c, "stride": s, "ms": ms})
        cells = " ".join(f"{ms[f]:9.1f}" if ms[f] is not None else f"{'-':>9}" for f in forms)
        print(f"{h:>4}x{w:<5} {c:>5} {s:>2} {cells}", file=sys.stderr, flush=True)
    result = {
        "batch": args.batch,
        "kernel": args.kernel,
        "repeats": args.repeats,
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
