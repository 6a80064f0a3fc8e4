"""Host memory: the supernet's training step with glibc's malloc and dispatch as they come,
against allocators that keep freed large blocks for reuse, each preloaded (`LD_PRELOAD`) with
steps dispatched inline (as `hwnas.supernet.host_memory.reuse_host_memory` does): jemalloc
(as it comes and tuned), tcmalloc and mimalloc (Debian's `libjemalloc2`, `libtcmalloc-minimal4`,
`libmimalloc2.0`) and PyPI's mimalloc (`cmeel-mimalloc`, what `hwnas train` loads). The
home-made block cache they were measured against (`bigblocks`, up to commit 7e1b2f5) was
deleted on 2026-12-07, the libraries being as fast (docs/supernet.md has the table).

Run from the repository root:

    PYTHONPATH=. python bench/host_memory.py [--space ofa-mbv3] [--step largest|sandwich]
        [--batch N] [--steps 6] [--repeats 3] [--settings default,tcmalloc,...]
        [--work DIR] [--out result.json]

Each measurement is a fresh process (the allocator and JAX's dispatch mode hold for a whole
process), the settings alternating `--repeats` times so machine noise hits them alike; a
setting whose library is not installed is left out, said on stderr. With `--work DIR` each
finished process's figures are kept there and a second call goes on where the first stopped.

A process compiles the training step (from XLA's persistent cache after the first) and
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
from hwnas.supernet.host_memory import allocator_library

LIB = Path("/usr/lib") / f"{os.uname().machine}-linux-gnu"
JEMALLOC_KEEP = "oversize_threshold:0,dirty_decay_ms:30000,muzzy_decay_ms:30000"
# setting -> (library to preload, its environment, a symbol that only it defines)
LIBRARIES: dict[str, tuple[str, dict[str, str], str]] = {
    "jemalloc": (str(LIB / "libjemalloc.so.2"), {}, "mallctl"),
    # large blocks in the arenas (no dedicated arena purging at once), purged after 30 s
    "jemalloc-tuned": (
        str(LIB / "libjemalloc.so.2"),
        {"MALLOC_CONF": JEMALLOC_KEEP},
        "mallctl",
    ),
    # also one arena: a block freed by one thread serves the next step's, whichever thread
    "jemalloc-1arena": (
        str(LIB / "libjemalloc.so.2"),
        {"MALLOC_CONF": "narenas:1," + JEMALLOC_KEEP},
        "mallctl",
    ),
    # and never purged: freed pages stay mapped until the next epoch's purge
    "jemalloc-nodecay": (
        str(LIB / "libjemalloc.so.2"),
        {"MALLOC_CONF": "narenas:1,oversize_threshold:0,dirty_decay_ms:-1,muzzy_decay_ms:-1"},
        "mallctl",
    ),
    "tcmalloc": (str(LIB / "libtcmalloc_minimal.so.4"), {}, "tc_malloc"),
    "mimalloc": (str(LIB / "libmimalloc.so.2"), {}, "mi_malloc"),
    "mimalloc-pypi": ("cmeel-mimalloc", {}, "mi_malloc"),
}
SETTINGS = ("default", *LIBRARIES)


def library(setting: str) -> str | None:
    """The file to preload for `setting` (None: nothing, or not installed here)."""
    if setting == "default":
        return None
    path = LIBRARIES[setting][0]
    if path == "cmeel-mimalloc":
        found = allocator_library()
        return str(found) if found else None
    return path if Path(path).exists() else None


def loaded(setting: str) -> bool:
    """Whether this process runs with `setting`'s allocator."""
    import ctypes

    return hasattr(ctypes.CDLL(None), LIBRARIES[setting][2])


def child(args: argparse.Namespace) -> dict:
    """One process's figures for one setting."""
    changed = args.child != "default"
    if changed:
        if not loaded(args.child):
            raise SystemExit(f"{args.child} is not loaded: nothing to measure")
        import jax  # inline dispatch: a step's blocks are freed before the next's are taken

        jax.config.update("jax_cpu_enable_async_dispatch", False)
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
    }


def run_child(setting: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", setting, "--steps", str(args.steps)]
    cmd += ["--space", args.space, "--step", args.step]
    cmd += ["--batch", str(args.batch)] if args.batch else []
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    preload = library(setting)
    if preload:
        env["LD_PRELOAD"] = preload
        env.update(LIBRARIES.get(setting, ("", {}, ""))[1])
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def cached(work: Path | None, setting: str, rep: int, args: argparse.Namespace, make) -> dict:
    """One process's figures, kept under `work` (a later call reuses them)."""
    if work is None:
        return make()
    path = work / f"{args.space}-{args.step}-{args.batch or 0}-{args.steps}-{setting}-{rep}.json"
    if path.exists():
        return json.loads(path.read_text())
    result = make()
    work.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result) + "\n")
    return result


def compare(args: argparse.Namespace) -> dict:
    settings = []
    unknown = set(args.settings) - set(SETTINGS)
    if unknown:
        raise SystemExit(f"unknown --settings {sorted(unknown)}: choose from {list(SETTINGS)}")
    for s in args.settings:
        if s == "default" or library(s):
            settings.append(s)
        else:
            print(f"{s}: its library is not installed here, left out", file=sys.stderr)
    runs: dict[str, list[dict]] = {s: [] for s in settings}
    for rep in range(args.repeats):
        for setting in settings:
            r = cached(args.work, setting, rep, args, lambda s=setting: run_child(s, args))
            runs[setting].append(r)
            print(
                f"round {rep + 1}/{args.repeats} {setting}: {r['step_s']:.2f} s a step, "
                f"{r['faults_per_step']:.0f} faults a step, RSS {r['peak_rss_gb']:.2f} GB",
                file=sys.stderr,
                flush=True,
            )
    med = {
        s: {k: statistics.median(r[k] for r in runs[s]) for k in SETTINGS_KEYS} for s in settings
    }
    base = med[settings[0]]["step_s"]
    return {
        "space": args.space,
        "step": args.step,
        "batch": runs[settings[0]][0]["batch"],
        "median": med,
        "speedup": {s: base / m["step_s"] for s, m in med.items()},
        "runs": runs,
        "argv": sys.argv,
    }


SETTINGS_KEYS = ("warmup_s", "step_s", "faults_per_step", "peak_rss_gb")


def print_table(result: dict) -> None:
    head = f"\n{result['space']}, {result['step']} step, batch {result['batch']}"
    print(head, file=sys.stderr)
    cols = ("warm-up s", "s/step", "faults/step", "peak RSS GB")
    print(f"{'setting':<16}" + "".join(f"{c:>14}" for c in (*cols, "speedup")), file=sys.stderr)
    for s, m in result["median"].items():
        print(
            f"{s:<16}{m['warmup_s']:>14.1f}{m['step_s']:>14.2f}{m['faults_per_step']:>14.0f}"
            f"{m['peak_rss_gb']:>14.2f}{result['speedup'][s]:>13.2f}x",
            file=sys.stderr,
        )


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
    p.add_argument(
        "--settings",
        type=lambda v: v.split(","),
        default=list(SETTINGS),
        help=f"comma-separated, the first the baseline (default {','.join(SETTINGS)})",
    )
    p.add_argument("--work", type=Path, default=None, help="keep each process's figures here")
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
