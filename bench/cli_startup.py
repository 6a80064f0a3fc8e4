"""How long `hwnas --help` and `hwnas COMMAND --help` take as whole processes, beside a bare
Python start and the eager import the CLI used to do (every service, with JAX, Optuna,
SQLAlchemy and TensorFlow), each timed in turn, round after round: medians of `--repeats`.

    PYTHONPATH=. python bench/cli_startup.py --repeats 7

Prints one JSON line: per command its median and spread in seconds, and the medians' ratio to
the eager import.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ["", "space", "train", "subnet", "measure", "predictor fit", "predict", "search",
            "pareto", "export", "dashboard", "report", "demo", "db init", "db status",
            "accuracy fit"]  # fmt: skip
EAGER = "import search.services.demo, search.services.report, search.services.export"


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr[-500:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    cases = {"python -c pass": [sys.executable, "-c", "pass"],
             "eager service imports": [sys.executable, "-c", EAGER]}  # fmt: skip
    for c in COMMANDS:
        cases[f"hwnas {c} --help".replace("  ", " ")] = [
            sys.executable, "-m", "hwnas.search.cli", *c.split(), "--help"
        ]  # fmt: skip
    times: dict[str, list[float]] = {k: [] for k in cases}
    timed(cases["eager service imports"])  # warm the file cache once
    for r in range(args.repeats):
        for name, cmd in cases.items():
            times[name].append(timed(cmd))
        print(f"round {r + 1}/{args.repeats}", file=sys.stderr, flush=True)
    eager = statistics.median(times["eager service imports"])
    out = {
        name: {
            "median_s": round(statistics.median(t), 3),
            "min_s": round(min(t), 3),
            "max_s": round(max(t), 3),
            "ratio_to_eager": round(statistics.median(t) / eager, 3),
        }
        for name, t in times.items()
    }
    helps = [v["median_s"] for k, v in out.items() if k.startswith("hwnas")]
    print(json.dumps({"repeats": args.repeats, "slowest_help_median_s": max(helps),
                      "commands": out}))  # fmt: skip


if __name__ == "__main__":
    main()
