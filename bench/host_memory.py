"""Host memory A/B: the supernet's training step with malloc and dispatch as they come, and with
the block cache (`supernet/native/bigblocks.cc` preloaded, steps dispatched inline by
`hwnas.supernet.host_memory.reuse_host_memory`), as a one-process `hwnas train` above 32 px runs.

Run from the repository root:

    PYTHONPATH=. python bench/host_memory.py [--space ofa-mbv3] [--step largest|sandwich]
        [--batch N] [--steps 6] [--repeats 3] [--out result.json]

Each measurement is a fresh process (the allocator's settings and JAX's dispatch mode hold for a
whole process), the two settings alternating `--repeats` times so machine noise hits them
alike. A process compiles the training step (from XLA's persistent cache after the first) and
warms it up: for the largest subnet alone two untimed steps, for the sandwich (`--step
sandwich`, as `hwnas train` trains) steps until every resolution has run. Then it times
`--steps` steps one by one; it reports the warm-up's seconds, the median step, the minor page
faults of the timed steps and its peak RSS. The parent reports the medians
of each setting and the ratio of their step times. A table goes to stderr and one JSON object is
the last line of stdout.
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
from pathlib import Path

from bench.train_throughput import positive_int
from hwnas.supernet.host_memory import block_cache_library, block_cache_stats

SETTINGS = ("default", "reuse")


def child(args: argparse.Namespace) -> dict:
    """One process's figures for one setting."""
    from hwnas.supernet.host_memory import reuse_host_memory

    changed = reuse_host_memory() if args.child == "reuse" else False
    if args.child == "reuse" and not changed:
        raise SystemExit("the block cache did not load: no reuse to measure")
    from bench.train_throughput import peak_rss_gb, sandwich_runner, supernet_runner
    from hwnas.search.services.training import default_batch_size
    from hwnas.supernet.compile_cache import enable_compile_cache
    from hwnas.supernet.space import load_space
    from hwnas.supernet.train_step import TrainConfig, make_optimizer

    enable_compile_cache()
    space = load_space(args.space)
    batch = args.batch or default_batch_size(space)
    tx = make_optimizer(TrainConfig(), 100)
    t0 = time.perf_counter()
    if args.step == "sandwich":  # warmed up: a step at every resolution
        runner = sandwich_runner(space, tx, batch)[0]
    else:
        runner = supernet_runner(space, tx, batch)[0]
        runner.run(2)
    warmup = time.perf_counter() - t0
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    steps = [runner.run(1) for _ in range(args.steps)]
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return {
        "setting": args.child,
        "allocator_changed": changed,
        "batch": batch,
        "warmup_s": warmup,
        "step_s": statistics.median(steps),
        "steps_s": [round(s, 3) for s in steps],
        "faults_per_step": faults / args.steps,
        "peak_rss_gb": peak_rss_gb(),
        "block_cache": block_cache_stats(),
    }


def run_child(setting: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", setting, "--steps", str(args.steps)]
    cmd += ["--space", args.space, "--step", args.step]
    cmd += ["--batch", str(args.batch)] if args.batch else []
    env = dict(os.environ)
    if setting == "reuse":
        env["LD_PRELOAD"] = str(block_cache_library())
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(args: argparse.Namespace) -> dict:
    runs: dict[str, list[dict]] = {s: [] for s in SETTINGS}
    for rep in range(args.repeats):
        for setting in SETTINGS:
            runs[setting].append(run_child(setting, args))
            r = runs[setting][-1]
            print(
                f"round {rep + 1}/{args.repeats} {setting}: {r['step_s']:.2f} s a step, "
                f"{r['faults_per_step']:.0f} faults a step, RSS {r['peak_rss_gb']:.2f} GB",
                file=sys.stderr,
                flush=True,
            )
    med = {
        s: {k: statistics.median(r[k] for r in runs[s]) for k in SETTINGS_KEYS} for s in SETTINGS
    }
    return {
        "space": args.space,
        "step": args.step,
        "batch": runs["default"][0]["batch"],
        "median": med,
        "speedup": med["default"]["step_s"] / med["reuse"]["step_s"],
        "runs": runs,
        "argv": sys.argv,
    }


SETTINGS_KEYS = ("warmup_s", "step_s", "faults_per_step", "peak_rss_gb")


def print_table(result: dict) -> None:
    head = f"\n{result['space']}, {result['step']} step, batch {result['batch']}"
    print(head, file=sys.stderr)
    cols = ("warm-up s", "s/step", "faults/step", "peak RSS GB")
    print(f"{'setting':<10}" + "".join(f"{c:>14}" for c in cols), file=sys.stderr)
    for s in SETTINGS:
        m = result["median"][s]
        print(
            f"{s:<10}{m['warmup_s']:>14.1f}{m['step_s']:>14.2f}{m['faults_per_step']:>14.0f}"
            f"{m['peak_rss_gb']:>14.2f}",
            file=sys.stderr,
        )
    print(f"speedup (default / reuse): {result['speedup']:.2f}x", file=sys.stderr)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--space", default="ofa-mbv3", help="preset name or file (default ofa-mbv3)")
    p.add_argument(
        "--step",
        choices=("largest", "sandwich"),
        default="largest",
        help="the step for the largest subnet alone, or the sandwich at every resolution",
    )
    p.add_argument("--batch", type=positive_int, default=None, help="default: hwnas train's")
    p.add_argument("--steps", type=positive_int, default=6, help="timed steps a process (6)")
    p.add_argument("--repeats", type=positive_int, default=3, help="processes per setting (3)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON result here")
    p.add_argument("--child", choices=SETTINGS, default=None, help="(internal) one process")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.child:
        result = child(args)
    else:
        result = compare(args)
        print_table(result)
        if args.out:
            args.out.write_text(json.dumps(result) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
