"""Fitting and predicting at the size of a real space, timed as a user meets them: the wall time
of `hwnas predictor fit` on an imported measurement file, and of `hwnas predict --subnets` on
100,000 subnets, each a fresh process, medians of `--runs`.

    python -m bench predictor_scale --db URL --target cpu --space ofa-mbv3-r25 --work DIR
    python bench/predictor_scale.py --db URL --target cpu --space ofa-mbv3-r25 --work DIR

The database holds the target's measurements of the space (`hwnas measure`, or `hwnas measure
--import`); each fit stores its predictors there, as a user's would. The 100,000-subnet file
is written once into DIR. The last stdout line is JSON.

With `--synthetic N` (and an imported target's name, e.g. `--target r25-synth`), N random
subnets with latencies from a physical formula (per-layer cost plus MACs, 3% noise) are
written to DIR and imported first (`hwnas measure --import`; importing again adds nothing):
the fit's time depends on the measurements' number and the space, not on their values, and
1,000 real measurements at 25 resolutions take over half an hour of conversions here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hwnas.supernet.space import load_space


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def hwnas(*args: str, db: str, out: Path | None = None) -> tuple[float, str]:
    """Wall seconds of `hwnas ARGS --db DB` in a fresh process, and its stdout's last line."""
    cmd = [sys.executable, "-m", "hwnas.search.cli", *args, "--db", db]
    t0 = time.perf_counter()
    if out is None:
        done = subprocess.run(cmd, capture_output=True, text=True)
    else:
        with open(out, "w") as sink:
            done = subprocess.run(cmd, stdout=sink, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr[-2000:]}")
    last = "" if out else done.stdout.strip().splitlines()[-1]
    return seconds, last


def subnet_file(path: Path, space_name: str, n: int) -> Path:
    if not path.exists():
        space = load_space(space_name)
        rng = np.random.default_rng(5)
        lines = (json.dumps({"subnet": space.sample(rng).to_dict()}) + "\n" for _ in range(n))
        path.write_text("".join(lines))
    return path


def synthetic_file(path: Path, space_name: str, n: int) -> Path:
    """`n` random subnets, latency = (0.4 + 0.05 x layers + 0.012 x MMACs) ms x exp(3% noise)."""
    from hwnas.latency.features import SpaceTables, macs, physical, physical_columns
    from hwnas.search.services.measuring import sample_subnets

    space = load_space(space_name)
    subnets = sample_subnets(space, n, 0, spread=0.5)
    t = SpaceTables(space)
    enc = t.encode(subnets)
    layers = physical(t, enc)[:, physical_columns(t)["layers"]]
    noise = np.exp(np.random.default_rng(0).normal(0.0, 0.03, n))
    ms = (0.4 + 0.05 * layers + 0.012 * macs(t, enc)) * noise
    rows = ({"subnet": s.to_dict(), "latency_ms": round(float(y), 5)}
            for s, y in zip(subnets, ms, strict=True))  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def main() -> None:
    args = parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    db, target = args.db, args.target
    if args.synthetic:
        n = args.synthetic
        path = synthetic_file(work / f"synthetic-{n}.jsonl", args.space, n)
        hwnas("measure", "--import", str(path), "--target", target, "--space", args.space, db=db)
        log(f"imported {path} as {target}")
    fits, last = [], {}
    for i in range(args.runs):
        seconds, line = hwnas("predictor", "fit", "--target", target, "--space", args.space,
                              "--json", db=db)  # fmt: skip
        fits.append(seconds)
        last = json.loads(line)
        log(f"fit {i + 1}: {seconds:.2f} s ({last['n_train']} training subnets, {last['model']})")
    subnets = subnet_file(work / f"subnets-{args.n_predict}.jsonl", args.space, args.n_predict)
    predicts = []
    for i in range(args.runs):
        out = work / "predicted.jsonl"
        seconds, _ = hwnas("predict", "--target", target, "--space", args.space, "--subnets",
                           str(subnets), db=db, out=out)  # fmt: skip
        assert len(out.read_text().splitlines()) == args.n_predict
        predicts.append(seconds)
        log(f"predict {i + 1}: {seconds:.2f} s for {args.n_predict} subnets")
    result = {
        "space": args.space,
        "target": target,
        "n_measurements": last["n_train"] + last["holdout"]["n"],
        "fit_seconds": {"median": float(np.median(fits)), "all": fits},
        "fit": {k: last[k] for k in ("n_train", "model", "holdout")},
        "predict_n": args.n_predict,
        "predict_seconds": {"median": float(np.median(predicts)), "all": predicts},
        "predict_per_s": args.n_predict / float(np.median(predicts)),
    }
    print(json.dumps(result))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", required=True, help="database URL with the target's measurements")
    p.add_argument("--target", required=True, help="the target (its key)")
    p.add_argument("--space", default="ofa-mbv3-r25")
    p.add_argument("--work", required=True, help="folder for the 100,000-subnet file")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--n-predict", type=int, default=100_000)
    p.add_argument(
        "--synthetic", type=int, default=0, metavar="N",
        help="first import N subnets with formula latencies as TARGET (an imported target's name)",
    )  # fmt: skip
    return p.parse_args()


if __name__ == "__main__":
    main()
