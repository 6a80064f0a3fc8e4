"""Which latency does the protocol measure: a model warm, as a deployment that runs it back to back
sees it, or a model still cold from the switch between models that interleaving causes?

    python bench/protocol_warmth.py [--space digits] [--target tflite-fp32-t1] [--n 40]
                                    [--variants 5:5,20:20]

The same `--n` random subnets of `--space` (initialised weights: latency does not depend on
their values) are timed three ways, each with two passes in a fresh random order whose medians
are averaged: a plain back-to-back loop per model (20 warm-up calls, then 9 rounds of 30 calls,
the median of its 270 calls: what LiteRT's benchmark tool and a serving loop see); the
measurement protocol of `hwnas measure` as it is; and the protocol with each `--variants`
re-warm setting (CALLS:MS, untimed calls after every switch until CALLS calls or MS ms have
passed). Reported per way: the median and range of its latency over the plain loop's, and its
Kendall tau against the plain loop. The last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from hwnas.latency.protocol import Protocol
from hwnas.latency.runners import make_runner
from hwnas.latency.targets import Target
from hwnas.latency.worker import measure_jobs
from hwnas.search.output import show_logs
from hwnas.search.services.measuring import build_jobs_for, sample_subnets
from hwnas.search.services.model_source import SpaceContext
from hwnas.supernet.space import load_space

PLAIN_WARMUP, PLAIN_ROUNDS, PLAIN_CALLS = 20, 9, 30


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def plain_loop(jobs, base: Path, seed: int) -> np.ndarray:
    """Median ms of each job timed back to back, models visited in a random order."""
    out = np.zeros(len(jobs))
    for i in np.random.default_rng(seed).permutation(len(jobs)):
        run = make_runner(jobs[i], base)
        for _ in range(PLAIN_WARMUP):
            run()
        times = []
        for _ in range(PLAIN_ROUNDS * PLAIN_CALLS):
            t0 = time.perf_counter_ns()
            run()
            times.append((time.perf_counter_ns() - t0) / 1e6)
        out[i] = np.median(times)
    return out


def protocol_ms(jobs, base: Path, protocol: Protocol, seed: int) -> np.ndarray:
    results = measure_jobs(jobs, base, protocol, seed=seed, refs=[])
    return np.asarray([r.stats["median_ms"] for r in results])


def spread(ms: np.ndarray) -> dict:
    return {"min": float(ms.min()), "median": float(np.median(ms)), "max": float(ms.max())}


def versus(ms: np.ndarray, plain: np.ndarray) -> dict:
    ratio = ms / plain
    return {
        "median_ratio": float(np.median(ratio)),
        "ratio_min": float(ratio.min()),
        "ratio_max": float(ratio.max()),
        "kendall": float(kendalltau(ms, plain).statistic),
    }


def main() -> None:
    show_logs()  # the services' progress on stderr, as the CLI shows it
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="digits")
    ap.add_argument("--target", default="tflite-fp32-t1")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default="20:20", help="CALLS:MS re-warm settings to compare")
    args = ap.parse_args()
    space, target = load_space(args.space), Target.parse(args.target)
    ctx = SpaceContext(space)
    subnets = sample_subnets(space, args.n, args.seed)
    ways: dict[str, list[np.ndarray]] = {}
    with tempfile.TemporaryDirectory(prefix="hwnas-warmth-") as tmp:
        base = Path(tmp)
        (base / "models").mkdir()
        jobs = build_jobs_for(ctx, target, subnets, False, base / "models")
        settings = {"protocol": Protocol()}
        for v in filter(None, args.variants.split(",")):
            calls, ms = v.split(":")
            p = dataclasses.replace(Protocol(), rewarm_calls=int(calls), rewarm_ms=float(ms))
            settings[f"rewarm {calls} calls / {ms} ms"] = p
        for rep in range(2):  # two passes of every way, interleaved in time
            log(f"pass {rep + 1}: plain back-to-back loop")
            ways.setdefault("plain", []).append(plain_loop(jobs, base, args.seed + rep))
            for name, p in settings.items():
                log(f"pass {rep + 1}: {name}")
                ways.setdefault(name, []).append(protocol_ms(jobs, base, p, args.seed + rep))
    mean = {k: np.mean(v, axis=0) for k, v in ways.items()}
    plain = mean["plain"]
    out = {
        "space": space.name,
        "target": target.key,
        "n": len(subnets),
        "plain_ms": spread(plain),
        "plain_self": versus(ways["plain"][1], ways["plain"][0]),
        "versus_plain": {k: versus(v, plain) for k, v in mean.items() if k != "plain"},
        "settings": {k: dataclasses.asdict(p) for k, p in settings.items()},
    }
    for k, v in out["versus_plain"].items():
        log(f"{k:28s} / plain: median {v['median_ratio']:.3f} "
            f"[{v['ratio_min']:.3f}, {v['ratio_max']:.3f}] tau {v['kendall']:.3f}")  # fmt: skip
    print(json.dumps(out))


if __name__ == "__main__":
    main()
