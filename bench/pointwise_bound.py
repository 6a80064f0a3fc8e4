"""What the matmuls alone allow: a ceiling on the training step's useful MAC rate.

Run from the repository root:

    PYTHONPATH=. python bench/pointwise_bound.py [--space NAME|FILE] [--batch N] [--repeats 5]

The supernet's training step at 224 px computes most of its MACs in 1x1 convolutions (the
inverted residuals' expand and project, the head), which are matmuls of shape
(batch x positions, C_in) @ (C_in, C_out) with C_in or C_out of 16-160 on the `ofa-mbv3`
space: thin shapes, whose rate on a CPU is bound by memory traffic more than by arithmetic.
This bench times, in one run, every such matmul of the largest subnet at its largest
resolution as `jnp.dot` alone (forward, and the two backward products dX = dY W^T and
dW = X^T dY), beside this machine's square f32 matmul peak (`train_throughput.matmul_peak`).

It reports the rate those matmuls reach (GMAC/s and share of the peak) and the ceiling it
puts on the whole step: if the depthwise layers, BatchNorm, activations, masks and the
optimizer cost nothing at all, the step could not beat (every MAC of the subnet, forward and
backward) / (the time of its pointwise matmuls alone). A goal above that ceiling cannot be
met by any change to the rest of the step on this machine. One JSON object is the last line
of stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from train_throughput import matmul_peak  # bench/ is on the path: run as bench/NAME.py

from hwnas.search.services.training import default_batch_size
from hwnas.supernet.space import SearchSpace, load_space


def pointwise_shapes(space: SearchSpace, batch: int) -> list[tuple[int, int, int]]:
    """(rows, K, N) of every pointwise matmul of the largest subnet's forward pass."""
    s = space.largest()
    out = []
    for ly in space.layers(s):
        out.append((batch * ly.h_in**2, ly.c_in, ly.mid))  # expand
        out.append((batch * ly.h_out**2, ly.mid, ly.c_out))  # project
    last = space.layers(s)[-1]
    out.append((batch * last.h_out**2, last.c_out, space.head_width))  # head
    return out


def _median_time(fn, args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_shape(rows: int, k: int, n: int, repeats: int) -> float:
    """Seconds of the forward product and both backward products of one shape."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(rows, k)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(k, n)).astype(np.float32))
    dy = jnp.asarray(rng.normal(size=(rows, n)).astype(np.float32))
    fwd = jax.jit(lambda x, w: x @ w)
    dx = jax.jit(lambda dy, w: dy @ w.T)
    dw = jax.jit(lambda x, dy: x.T @ dy)
    return sum(
        _median_time(f, a, repeats) for f, a in ((fwd, (x, w)), (dx, (dy, w)), (dw, (x, dy)))
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="ofa-mbv3")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    space = load_space(args.space)
    batch = args.batch or default_batch_size(space)
    peak_before = matmul_peak()
    shapes = pointwise_shapes(space, batch)
    seconds, macs = 0.0, 0
    for i, (rows, k, n) in enumerate(shapes):
        print(f"shape {i + 1}/{len(shapes)}: ({rows}, {k}) @ ({k}, {n})", file=sys.stderr)
        seconds += time_shape(rows, k, n, args.repeats)
        macs += 3 * rows * k * n
    peak = statistics.median([peak_before, matmul_peak()])
    total = 3 * batch * space.cost(space.largest()).macs
    result = {
        "space": space.name,
        "batch": batch,
        "resolution": space.largest().resolution,
        "matmul_peak_gmacs": peak,
        "pointwise_gmacs": macs / seconds / 1e9,
        "pointwise_share_of_peak": macs / seconds / 1e9 / peak,
        "pointwise_share_of_subnet_macs": macs / total,
        "pointwise_seconds_per_step": seconds,
        "ceiling_useful_share_of_peak": total / seconds / 1e9 / peak,
    }
    for key, v in result.items():
        print(f"{key:32s} {v:.4g}" if isinstance(v, float) else f"{key:32s} {v}", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
