"""Training throughput: the supernet's step against a plain Flax model of the same subnet.

Run from the repository root:

    PYTHONPATH=. python bench/train_throughput.py [--space NAME|FILE] [--batch N] [--steps 10]
        [--repeats 5] [--out result.json]

It measures images/s, in one run on one machine, of
  (a) the supernet's training step (`make_train_step`) for the largest subnet alone: one
      forward and backward pass through the supernet, each depthwise layer in the form
      `hwnas.supernet.depthwise.choose` gives it;
  (b) a plain Flax linen model of the same largest subnet (`nn.Conv` with
      `feature_group_count` for the depthwise convolutions, `nn.BatchNorm`, `nn.Dense` SE),
      trained with the same optimizer, batch, resolution and cross-entropy loss;
  (c) for information, the full sandwich step as trained (largest, smallest and random subnets
      at the step's resolution), counting batch x subnets images per step.
Each is compiled first (compile seconds are reported for (a) and (b)), then timed over
`--repeats` rounds of `--steps` steps, rounds of (a), (b) and (c) alternating so machine noise
hits them alike. In the same run it measures this machine's f32 matmul peak (a square `jnp.dot`,
median of 5; before the runs, after each round and at the end, the highest reading taken: on a
shared machine a reading can come out at half the cores' rate, and the peak is what they reach)
and reports the useful MAC rate: the MACs of the subnets a step trains (forward
and backward: 3x the forward MACs) per second, as a share of that peak; and the share of the
MACs the step computes that are useful (masks run every kernel and expand ratio at the largest
size, so a small subnet costs nearly what the largest does). Peak RSS of each of (a), (b), (c)
comes from a child process per step (`--rss-of`), compiled from the same XLA cache.
A table goes to stderr and one JSON object is the last line of stdout.

What it should show: XLA on CPU runs grouped (depthwise) convolutions far below their FLOP
count, so the supernet's step (a) should be at least 2x the plain model's (b): `ratio` >= 2.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from hwnas.search.services.training import ALLOCATOR_ABOVE_PX, default_batch_size
from hwnas.supernet.compile_cache import enable_compile_cache
from hwnas.supernet.host_memory import allow_restart, restart_with_allocator, reuse_host_memory
from hwnas.supernet.layers import BN_EPS, BN_MOMENTUM, activation, hsigmoid, hswish
from hwnas.supernet.model import SuperNet, arch_arrays, stack_archs
from hwnas.supernet.space import LayerShape, SearchSpace, Subnet, load_space
from hwnas.supernet.train_step import (
    TrainConfig,
    create_train_state,
    make_optimizer,
    make_train_step,
    step_subnets,
)


# ---- the plain model ---------------------------------------------------------------------------
def _bn() -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=False, momentum=BN_MOMENTUM, epsilon=BN_EPS)


class PlainBlock(nn.Module):
    """One inverted-residual layer of a fixed subnet with ordinary Flax layers."""

    layer: LayerShape

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        ly, act = self.layer, activation(self.layer.act)
        h = act(_bn()(nn.Conv(ly.mid, (1, 1), use_bias=False)(x)))
        k, s = (ly.kernel, ly.kernel), (ly.stride, ly.stride)
        dw = nn.Conv(ly.mid, k, s, padding="SAME", feature_group_count=ly.mid, use_bias=False)
        h = act(_bn()(dw(h)))
        if ly.se:
            pooled = jnp.mean(h, axis=(1, 2))  # rank 2, as the supernet
            e = hsigmoid(nn.Dense(ly.mid)(jax.nn.relu(nn.Dense(ly.se_mid)(pooled))))
            h = h * e[:, None, None, :]
        y = _bn()(nn.Conv(ly.c_out, (1, 1), use_bias=False)(h))
        return y + x if ly.residual else y


class PlainNet(nn.Module):
    """A subnet as a plain network: the supernet's stem and head around `PlainBlock`s."""

    space: SearchSpace
    layers: tuple[LayerShape, ...]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        sp = self.space
        stem = nn.Conv(
            sp.stem_width, (3, 3), strides=sp.stem_stride, padding="SAME", use_bias=False
        )
        x = hswish(_bn()(stem(x)))
        for layer in self.layers:
            x = PlainBlock(layer)(x)
        x = hswish(_bn()(nn.Conv(sp.head_width, (1, 1), use_bias=False)(x)))
        return nn.Dense(sp.num_classes)(jnp.mean(x, axis=(1, 2)))


def make_plain_step(model: PlainNet, tx: optax.GradientTransformation) -> Callable:
    """`step((params, batch_stats, opt_state), x, y) -> (state, loss)`, jitted and donating."""

    def loss_fn(params, batch_stats, x, y):
        logits, updates = model.apply(
            {"params": params, "batch_stats": batch_stats}, x, mutable=["batch_stats"]
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, updates["batch_stats"]

    def step(state, x, y):
        params, batch_stats, opt_state = state
        (loss, batch_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, batch_stats, x, y
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), batch_stats, opt_state), loss

    return jax.jit(step, donate_argnums=(0,))


# ---- runners ---------------------------------------------------------------------------------
class Runner:
    """Holds a step's (donated) state; `run(n)` runs n steps and waits for them."""

    def __init__(self, step: Callable, state, args_for: Callable[[int], tuple]) -> None:
        self.step, self.state, self.args_for, self.i = step, state, args_for, 0

    def run(self, n: int) -> float:
        t0 = time.perf_counter()
        out = None
        for _ in range(n):
            self.state, out = self.step(self.state, *self.args_for(self.i))
            self.i += 1
        jax.block_until_ready((self.state, out))
        return time.perf_counter() - t0


def batch_data(space: SearchSpace, batch: int, resolution: int, seed: int = 0):
    rng = np.random.default_rng((seed, resolution))
    x = rng.normal(size=(batch, resolution, resolution, space.in_channels)).astype(np.float32)
    y = rng.integers(0, space.num_classes, batch).astype(np.int32)
    return jnp.asarray(x), jnp.asarray(y)


def compiled(step: Callable, state, args: tuple) -> tuple[Callable, float]:
    """Ahead-of-time compile `step` for these arguments; returns it and the seconds taken."""
    t0 = time.perf_counter()
    exe = step.lower(state, *args).compile()
    return exe, time.perf_counter() - t0


def supernet_runner(space: SearchSpace, tx, batch: int) -> tuple[Runner, float]:
    net = SuperNet(space)
    state = create_train_state(net, tx, seed=0)
    archs = jax.tree.map(jnp.asarray, stack_archs([arch_arrays(space, space.largest())]))
    args = (*batch_data(space, batch, space.resolutions[-1]), archs)
    exe, seconds = compiled(make_train_step(net, tx), state, args)
    return Runner(exe, state, lambda _: args), seconds


def plain_runner(space: SearchSpace, tx, batch: int) -> tuple[Runner, float]:
    model = PlainNet(space, tuple(space.layers(space.largest())))
    x, y = batch_data(space, batch, space.resolutions[-1])
    variables = jax.jit(model.init)(jax.random.key(0), x[:1])
    params = variables["params"]
    state = (params, variables["batch_stats"], tx.init(params))
    exe, seconds = compiled(make_plain_step(model, tx), state, (x, y))
    return Runner(exe, state, lambda _: (x, y)), seconds


def sandwich_runner(space: SearchSpace, tx, batch: int) -> tuple[Runner, float, int]:
    """The training step over each step's sandwich; compiled (by calls) at every resolution."""
    net, config = SuperNet(space), TrainConfig(batch_size=batch)
    data = {r: batch_data(space, batch, r) for r in space.resolutions}

    def args_for(i: int) -> tuple:
        subnets = step_subnets(space, config, i)
        archs = stack_archs([arch_arrays(space, s) for s in subnets])
        return (*data[subnets[0].resolution], archs)

    runner = Runner(make_train_step(net, tx), create_train_state(net, tx, seed=0), args_for)
    seen: set[int] = set()
    t0 = time.perf_counter()
    while seen != set(space.resolutions):  # warm up: one compile per resolution
        seen.add(step_subnets(space, config, runner.i)[0].resolution)
        runner.run(1)
    return runner, time.perf_counter() - t0, len(step_subnets(space, config, 0))


# ---- MACs, peak and memory ---------------------------------------------------------------------
def masked(space: SearchSpace, subnet: Subnet) -> Subnet:
    """What the supernet computes for `subnet`: its depths and resolution, every layer at the
    largest kernel and expand ratio (the masks zero the rest, after computing it)."""
    n = space.n_slots
    k, e = (space.kernels[-1],) * n, (space.expands[-1],) * n
    return space.subnet(subnet.resolution, subnet.depths, k, e)


def step_macs(space: SearchSpace, config: TrainConfig, steps: range) -> tuple[float, float]:
    """Useful and computed MACs (forward + backward = 3x forward) per image, summed over the
    sandwich subnets of `steps`."""
    useful = computed = 0.0
    for i in steps:
        for s in step_subnets(space, config, i):
            useful += 3 * space.cost(s).macs
            computed += 3 * space.cost(masked(space, s)).macs
    return useful, computed


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """f32 GMAC/s of a square `jnp.dot` on this machine (median of `repeats`)."""
    a = jnp.asarray(np.random.default_rng(0).normal(size=(n, n)).astype(np.float32))
    dot = jax.jit(jnp.dot)
    jax.block_until_ready(dot(a, a))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(dot(a, a))
        times.append(time.perf_counter() - t0)
    return n**3 / statistics.median(times) / 1e9


def child_rss(name: str, args: argparse.Namespace) -> float:
    """Peak RSS (GB) of a fresh process that builds, compiles and runs two steps of `name`."""
    cmd = [sys.executable, __file__, "--rss-of", name, "--batch", str(args.batch)]
    if args.space:
        cmd += ["--space", args.space]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["maxrss_gb"]


def rss_of(name: str, space: SearchSpace, tx, batch: int) -> None:
    runner = {"supernet": supernet_runner, "plain": plain_runner, "sandwich": sandwich_runner}
    r = runner[name](space, tx, batch)[0]
    r.run(2)
    print(json.dumps({"maxrss_gb": peak_rss_gb()}))


def peak_rss_gb() -> float:
    """This process's peak RSS: VmHWM belongs to its own address space (getrusage's ru_maxrss
    keeps the parent's peak across fork and exec on Linux, so every child reported it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1e6
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


# ---- measuring and reporting -----------------------------------------------------------------
def summary(img_s: list[float]) -> dict:
    return {
        "median": statistics.median(img_s),
        "min": min(img_s),
        "max": max(img_s),
        "img_s": [round(v, 1) for v in img_s],
    }


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def measure(
    runners: dict[str, Runner], images: dict[str, int], args, peaks: list[float]
) -> dict[str, list[float]]:
    """Alternate rounds of every runner; images/s of each round. A matmul peak reading is
    appended to `peaks` after each round."""
    for r in runners.values():  # one untimed step each after compiling
        r.run(1)
    out: dict[str, list[float]] = {name: [] for name in runners}
    for rep in range(args.repeats):
        for name, r in runners.items():
            out[name].append(images[name] * args.steps / r.run(args.steps))
        peaks.append(matmul_peak())
        line = ", ".join(f"{n} {v[-1]:.1f}" for n, v in out.items())
        print(
            f"round {rep + 1}/{args.repeats}: {line} img/s, peak {peaks[-1]:.1f}", file=sys.stderr
        )
    return out


def print_table(result: dict) -> None:
    rows = [
        ("(a) supernet, largest", "supernet"),
        ("(b) plain nn.Conv", "plain"),
        ("(c) sandwich (all subnets)", "sandwich"),
    ]
    err = sys.stderr
    print(
        f"\nbatch {result['batch']}, resolution {result['resolution']}, "
        f"{result['device']}, {result['cpu_count']} CPUs",
        file=err,
    )
    print(f"{'step':<28}{'median img/s':>14}{'min':>10}{'max':>10}", file=err)
    for label, key in rows:
        r = result["runs"][key]
        print(f"{label:<28}{r['median']:>14.1f}{r['min']:>10.1f}{r['max']:>10.1f}", file=err)
    print(f"ratio a/b: {result['ratio']:.2f} (goal >= 2)", file=err)
    print(
        f"sandwich step: {result['sandwich_step_s'] * 1e3:.1f} ms "
        f"({result['sandwich_subnets']} subnets)",
        file=err,
    )
    print(
        "compile s: " + ", ".join(f"{k} {v:.1f}" for k, v in result["compile_s"].items()), file=err
    )
    print(
        "peak RSS GB: " + ", ".join(f"{k} {v:.2f}" for k, v in result["peak_rss_gb"].items()),
        file=err,
    )
    u = result["useful"]
    print(
        f"matmul peak {result['matmul_peak_gmac_s']:.1f} GMAC/s; useful MAC rate: largest "
        f"{u['largest_gmac_s']:.1f} GMAC/s ({u['largest_share']:.1%}), sandwich "
        f"{u['sandwich_gmac_s']:.1f} GMAC/s ({u['sandwich_share']:.1%}); useful share of the "
        f"sandwich's computed MACs {u['sandwich_useful_of_computed']:.1%}",
        file=err,
    )


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--batch",
        type=positive_int,
        default=None,
        help="images per step (default: hwnas train's for the space: 64, or 32 above 64 px)",
    )
    p.add_argument(
        "--steps", type=positive_int, default=10, help="steps per timed round (default 10)"
    )
    p.add_argument(
        "--repeats", type=positive_int, default=5, help="timed rounds of each (default 5)"
    )
    p.add_argument(
        "--space", default=None, help="preset name or .json/.toml file (default: digits)"
    )
    p.add_argument(
        "--rss-of",
        choices=("supernet", "plain", "sandwich"),
        default=None,
        help="(internal) print the peak RSS of two steps of one runner and exit",
    )
    p.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict | None:
    args = parse_args(argv)
    space = load_space(args.space)
    if argv is None and max(space.resolutions) > ALLOCATOR_ABOVE_PX:  # as `hwnas train` runs
        allow_restart(sys.orig_argv)
        restart_with_allocator()
    reused = reuse_host_memory()
    enable_compile_cache()
    args.batch = args.batch or default_batch_size(space)
    tx = make_optimizer(TrainConfig(), 100)
    if args.rss_of:
        return rss_of(args.rss_of, space, tx, args.batch)
    peak = matmul_peak()
    say(f"matmul peak {peak:.1f} GMAC/s; compiling (a) the supernet's step for the largest subnet")
    sup, sup_compile = supernet_runner(space, tx, args.batch)
    say(f"(a) compiled in {sup_compile:.0f} s; compiling (b) the plain model")
    plain, plain_compile = plain_runner(space, tx, args.batch)
    say(f"(b) compiled in {plain_compile:.0f} s; compiling (c) the sandwich at every resolution")
    sand, sand_warmup, n_subnets = sandwich_runner(space, tx, args.batch)
    say(
        f"(c) warmed up in {sand_warmup:.0f} s; timing {args.repeats} rounds of {args.steps} steps"
    )
    first_timed = sand.i + 1  # measure() runs one untimed step first
    runners = {"supernet": sup, "plain": plain, "sandwich": sand}
    images = {"supernet": args.batch, "plain": args.batch, "sandwich": args.batch * n_subnets}
    peaks = [peak]
    raw = measure(runners, images, args, peaks)
    runs = {k: summary(v) for k, v in raw.items()}
    peaks.append(matmul_peak())
    result = {
        "space": space.name,
        "batch": args.batch,
        "resolution": space.resolutions[-1],
        "supernet_img_s": runs["supernet"]["median"],
        "plain_img_s": runs["plain"]["median"],
        "ratio": runs["supernet"]["median"] / runs["plain"]["median"],
        "sandwich_img_s": runs["sandwich"]["median"],
        "sandwich_step_s": images["sandwich"] / runs["sandwich"]["median"],
        "sandwich_subnets": n_subnets,
        "compile_s": {"supernet": sup_compile, "plain": plain_compile, "sandwich": sand_warmup},
        "matmul_peak_gmac_s": max(peaks),
        "matmul_peak_readings": peaks,
        "runs": runs,
        "steps": args.steps,
        "repeats": args.repeats,
        "device": jax.devices()[0].device_kind,
        "backend": jax.default_backend(),
        "cpu_count": os.cpu_count(),
        "host_memory_reused": reused,
        "argv": sys.argv,
    }
    timed = range(first_timed, first_timed + args.steps * args.repeats)
    result["useful"] = useful_rates(space, args, result, timed)
    say("peak RSS: one child process per step")
    result["peak_rss_gb"] = {name: child_rss(name, args) for name in runners}
    print_table(result)
    line = json.dumps(result)
    if args.out:
        args.out.write_text(line + "\n")
    print(line)
    return result


def useful_rates(space: SearchSpace, args, result: dict, timed: range) -> dict:
    """Useful MAC rates of (a) and (c), as shares of the measured matmul peak."""
    peak = result["matmul_peak_gmac_s"]
    largest = 3 * space.cost(space.largest()).macs
    useful, computed = step_macs(space, TrainConfig(batch_size=args.batch), timed)
    sandwich_s = result["sandwich_step_s"] * len(timed)
    largest_rate = largest * result["supernet_img_s"] / 1e9
    sandwich_rate = useful * args.batch / sandwich_s / 1e9
    return {
        "largest_gmac_s": largest_rate,
        "largest_share": largest_rate / peak,
        "sandwich_gmac_s": sandwich_rate,
        "sandwich_share": sandwich_rate / peak,
        "sandwich_useful_of_computed": useful / computed,
        "sandwich_computed_gmac_s": computed * args.batch / sandwich_s / 1e9,
    }


if __name__ == "__main__":
    main()
