"""How well the protocol repeats itself: the same models measured in several sessions, each
with fresh runners, under protocol variants, and how far apart a model's sessions land.

    python bench/protocol_repeat.py [--space digits] [--target tflite-fp32-t1] [--n 24]
                                    [--sessions 3] [--variants 2:0.1,6:0.1,2:inf]

The same `--n` random subnets of `--space` (initialised weights) are converted once, then
measured `--sessions` times under every variant (PASSES:SETTLE_TOL, the protocol's passes and
its settled-visit tolerance, `inf` for every visit), the variants taking turns in each session
so that the machine's slow minutes fall on all of them. Per variant and size band (sub-0.15 ms,
0.15-0.5 ms, above), each model's spread is its largest session median over its smallest,
minus 1; reported: the median and largest spread of the band, and the share within 10% (what
a front check's +-10% can resolve at best). The last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

from hwnas.latency.protocol import Protocol
from hwnas.latency.targets import Target
from hwnas.latency.worker import measure_jobs
from hwnas.search.output import show_logs
from hwnas.search.services.measuring import build_jobs_for, sample_subnets
from hwnas.search.services.model_source import SpaceContext
from hwnas.supernet.space import load_space

BANDS = (("below 0.15 ms", 0.0, 0.15), ("0.15-0.5 ms", 0.15, 0.5), ("above 0.5 ms", 0.5, math.inf))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_variants(text: str) -> dict[str, Protocol]:
    out = {}
    for v in filter(None, text.split(",")):
        passes, tol = v.split(":")
        out[v] = dataclasses.replace(Protocol(), passes=int(passes), settle_tol=float(tol))
    return out


def band_spreads(sessions: np.ndarray, size: np.ndarray) -> dict:
    """Per size band of `size` (each model's median over all sessions): its models' spreads."""
    spread = sessions.max(0) / sessions.min(0) - 1
    out = {}
    for name, lo, hi in BANDS:
        s = spread[(size >= lo) & (size < hi)]
        if len(s):
            out[name] = {
                "n": len(s),
                "median_spread": float(np.median(s)),
                "max_spread": float(s.max()),
                "within10": float(np.mean(s <= 0.10)),
            }
    return out


def main() -> None:
    show_logs()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="digits")
    ap.add_argument("--target", default="tflite-fp32-t1")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sessions", type=int, default=3)
    ap.add_argument("--variants", default="2:0.1,6:0.1,2:inf", help="PASSES:SETTLE_TOL, ...")
    args = ap.parse_args()
    space, target = load_space(args.space), Target.parse(args.target)
    variants = parse_variants(args.variants)
    subnets = sample_subnets(space, args.n, args.seed, spread=0.5)
    ms: dict[str, list[np.ndarray]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory(prefix="hwnas-repeat-") as tmp:
        base = Path(tmp)
        (base / "models").mkdir()
        jobs = build_jobs_for(SpaceContext(space), target, subnets, False, base / "models")
        for s in range(args.sessions):
            for name, p in variants.items():
                log(f"session {s + 1}: {name}")
                res = measure_jobs(jobs, base, p, seed=args.seed + s)  # as `hwnas measure`
                ms[name].append(np.asarray([r.stats["median_ms"] for r in res]))
    out = {"space": space.name, "target": target.key, "n": len(subnets), "sessions": args.sessions}
    out["variants"] = {}
    for name, runs in ms.items():
        arr = np.asarray(runs)
        out["variants"][name] = band_spreads(arr, np.median(arr, 0))
        for band, v in out["variants"][name].items():
            log(f"{name:10s} {band:14s} n {v['n']:2d}: spread median {v['median_spread']:.3f} "
                f"max {v['max_spread']:.3f}, within 10% {v['within10']:.2f}")  # fmt: skip
    print(json.dumps(out))


if __name__ == "__main__":
    main()
