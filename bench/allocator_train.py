"""The allocator in a real `hwnas train`: 6 epochs of the `ofa-mbv3` space at 224 px on a folder
of generated JPEGs, once with glibc's malloc (`HWNAS_HOST_MEMORY=0`), once as `hwnas train` runs
by default (`product`: restarting itself with PyPI's mimalloc), and once with each library
allocator of `bench/host_memory.py` preloaded.

Run from the repository root:

    PYTHONPATH=. python bench/allocator_train.py --work DIR [--epochs 6] [--images 300]
        [--settings default,tcmalloc,...] [--repeats 1] [--out result.json]

The settings alternate, each run a fresh process; each finished run's figures are kept under
`--work` and a second call goes on where the first stopped (the folder is made once there). A
run reports its wall time, the median of its steady steps (the slowest 4, which load or compile
a resolution's step, left out), its minor page faults (`wait4`), and its peak RSS sampled every
0.5 s from /proc (the main process, and with the loader's workers). A table goes to stderr and
one JSON object is the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.host_memory import LIBRARIES, SETTINGS, library
from bench.stream_scale import STEP_RE, _one_per_step, children, make_folder, rss_mb

ROOT = Path(__file__).resolve().parents[1]


def environment(setting: str) -> dict[str, str]:
    """The environment of a run with `setting`'s allocator (product: as `hwnas train` runs
    by default)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "MALLOC_CONF")}
    env["PYTHONPATH"] = str(ROOT)
    if setting == "default":
        env["HWNAS_HOST_MEMORY"] = "0"
    elif setting != "product":
        env["LD_PRELOAD"] = str(library(setting))
        env.update(LIBRARIES[setting][1])
    return env


def train(folder: Path, part: Path, setting: str, epochs: int) -> dict:
    """One `hwnas train` run's figures."""
    part.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "hwnas.search.cli", "train", "--dataset", "folder",
           "--data-dir", str(folder), "--space", "ofa-mbv3", "--epochs", str(epochs),
           "--name", "bench", "--runs-dir", str(part / "runs"),
           "--db", f"sqlite:///{part / 'hwnas.db'}"]  # fmt: skip
    t0 = time.perf_counter()
    with (part / "stderr.txt").open("w") as err:
        proc = subprocess.Popen(cmd, cwd=part, env=environment(setting),
                                stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
        peak_main = peak_tree = 0.0
        while True:  # reaped by wait4 alone: its rusage is the run's
            main = rss_mb(proc.pid)
            tree = main + sum(rss_mb(k) for k in children(proc.pid))
            peak_main, peak_tree = max(peak_main, main), max(peak_tree, tree)
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            time.sleep(0.5)
    wall = time.perf_counter() - t0
    text = (part / "stderr.txt").read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{setting}: hwnas train failed ({proc.returncode}): {text[-1500:]}")
    times = [b for _, b in _one_per_step([(int(a), float(b)) for a, b in STEP_RE.findall(text)])]
    steady = sorted(times)[: max(len(times) - 4, 1)]
    return {
        "setting": setting,
        "wall_s": round(wall, 1),
        "steps": len(times),
        "step_s": statistics.median(steady),
        "minor_faults": usage.ru_minflt,
        "peak_rss_gb": round(peak_main / 1024, 2),
        "peak_rss_with_workers_gb": round(peak_tree / 1024, 2),
    }


def run(args: argparse.Namespace) -> dict:
    folder = make_folder(args.work / f"images-{args.images}", args.images)
    settings = [s for s in args.settings if s in ("default", "product") or library(s)]
    runs: dict[str, list[dict]] = {s: [] for s in settings}
    for rep in range(args.repeats):
        for setting in settings:
            kept = args.work / f"train-{args.epochs}ep-{setting}-{rep}.json"
            if not kept.exists():
                part = args.work / f"run-{setting}-{rep}"
                for old in ("hwnas.db", "hwnas.db-wal", "hwnas.db-shm"):
                    (part / old).unlink(missing_ok=True)
                r = train(folder, part, setting, args.epochs)
                kept.write_text(json.dumps(r) + "\n")
            runs[setting].append(json.loads(kept.read_text()))
            r = runs[setting][-1]
            print(f"{setting} #{rep + 1}: {r['wall_s']:.0f} s, {r['step_s']:.2f} s a step, "
                  f"{r['minor_faults'] / 1e6:.1f} M faults, peak RSS {r['peak_rss_gb']:.2f} GB",
                  file=sys.stderr, flush=True)  # fmt: skip
    keys = ("wall_s", "step_s", "minor_faults", "peak_rss_gb", "peak_rss_with_workers_gb")
    med = {s: {k: statistics.median(r[k] for r in rs) for k in keys} for s, rs in runs.items()}
    return {"epochs": args.epochs, "images": args.images, "median": med, "runs": runs,
            "argv": sys.argv}  # fmt: skip


def print_table(result: dict) -> None:
    cols = ("wall s", "s/step", "M faults", "peak RSS GB", "+workers GB")
    print(f"\n{'setting':<16}" + "".join(f"{c:>13}" for c in cols), file=sys.stderr)
    for s, m in result["median"].items():
        print(f"{s:<16}{m['wall_s']:>13.0f}{m['step_s']:>13.2f}{m['minor_faults'] / 1e6:>13.1f}"
              f"{m['peak_rss_gb']:>13.2f}{m['peak_rss_with_workers_gb']:>13.2f}",
              file=sys.stderr)  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", type=Path, required=True, help="kept runs and the image folder")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--images", type=int, default=300)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument(
        "--settings", type=lambda v: v.split(","), default=["product", *SETTINGS],
        help=f"comma-separated, from product,{','.join(SETTINGS)} (default: all)",
    )  # fmt: skip
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    unknown = set(args.settings) - {"product", *SETTINGS}
    if unknown:
        p.error(f"unknown --settings {sorted(unknown)}: choose from product,{','.join(SETTINGS)}")
    args.work.mkdir(parents=True, exist_ok=True)
    result = run(args)
    print_table(result)
    if args.out:
        args.out.write_text(json.dumps(result) + "\n")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
