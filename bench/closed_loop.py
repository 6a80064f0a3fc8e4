"""The search's closed loop with a well-measured predictor: front agreement per round.

    python bench/closed_loop.py --db URL --run demo --work DIR [--target tflite-fp32-t1]
        [--n 300] [--trials 150] [--rounds 3] [--budget-quantile 0.4] [--seed 0]

A copy of the database (`DIR/loop.db`; the one given is not written) gets `--n` random subnets
of the run measured on the target with `hwnas measure`'s protocol, a predictor fitted on them
(`hwnas predictor fit`, 20% held out), and then one `hwnas search` on that target under a
budget that `--budget-quantile` of random subnets meet, with the closed loop on: after each
round the front is measured, and unless every front subnet is within 10% of its prediction the
predictor is refitted with those measurements and the search goes on. Reported: the
predictor's held-out figures, each round's front agreement (all of it, and the subnets first
measured that round), the rounds needed, and the wall time of each part. Every part is kept
in DIR, so a run that is stopped continues where it stopped. The last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from hwnas.db.session import open_db, sqlite_path
from hwnas.latency.targets import Target
from hwnas.search.objective import Problem
from hwnas.search.output import show_logs
from hwnas.search.search_config import SearchConfig
from hwnas.search.services import measuring as latency_service
from hwnas.search.services import prediction as predictor_service
from hwnas.search.services import search as search_service
from hwnas.search.services.demo import measured_count
from hwnas.search.services.recorded_runs import load_run
from hwnas.supernet.space import SearchSpace

CHUNK = 50  # subnets measured per `hwnas measure` call (each stored before the next)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def work_db(src_url: str, work: Path) -> str:
    dst = work / "loop.db"
    if not dst.exists():
        src = sqlite_path(src_url)
        if src is None or not src.exists():
            sys.exit(f"--db {src_url}: give the SQLite database of a finished run")
        shutil.copy(src, dst)
    return f"sqlite:///{dst.resolve()}"


def measure(url: str, run: str, target: Target, n: int) -> float:
    t0 = time.perf_counter()
    with open_db(url, create=False) as db:
        while (have := measured_count(db, run, target)) < n:
            k = min(CHUNK, n - have)
            log(f"measuring {k} more subnets on {target.key} ({have} of {n})")
            latency_service.measure(url, run, target, k, seed=1000 + have, noise=False)
    return time.perf_counter() - t0


def fit(url: str, target: Target, state: dict) -> dict:
    if "fit" not in state:
        t0 = time.perf_counter()
        fitted = predictor_service.fit(url, target).to_json()
        state["fit"] = fitted | {"seconds": time.perf_counter() - t0}
    return state["fit"]


def budget(url: str, run: str, target: Target, quantile: float, seed: int) -> float:
    with open_db(url, create=False) as db:
        space = SearchSpace.from_dict(load_run(db, run).space)
        p = predictor_service.load_predictor(db, target)
    rng = np.random.default_rng(seed)
    ms = p.predict([space.sample(rng) for _ in range(2000)])
    return float(f"{np.quantile(ms, quantile):.2g}")


def main() -> None:
    show_logs()  # the services' progress on stderr, as the CLI shows it
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", required=True)
    ap.add_argument("--run", default="demo")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--target", default="tflite-fp32-t1")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--trials", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budget-quantile", type=float, default=0.4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    state_path = args.work / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    url, target = work_db(args.db, args.work), Target.parse(args.target)
    state.setdefault("measure_seconds", 0.0)
    state["measure_seconds"] += measure(url, args.run, target, args.n)
    fitted = fit(url, target, state)
    state.setdefault("budget_ms", budget(url, args.run, target, args.budget_quantile, args.seed))
    state_path.write_text(json.dumps(state))
    log(f"searching {target.key} under {state['budget_ms']:g} ms, up to {args.rounds} rounds")
    t0 = time.perf_counter()
    out = search_service.search(
        args.run, Problem((target.key,), ((target.key, state["budget_ms"]),)),
        SearchConfig(trials=args.trials, name="loop", seed=args.seed, rounds=args.rounds,
                     quiet=True), db_url=url,
    ).to_json()  # fmt: skip
    rounds = [
        {"round": r["round"], "trials": r["trials"], "agreement": r["agreement"][target.key]}
        for r in out["rounds"]
    ]
    result = {
        "target": target.key,
        "measured_subnets": args.n,
        "predictor_holdout": fitted["holdout"],
        "budget_ms": state["budget_ms"],
        "rounds": rounds,
        "rounds_needed": len(rounds) - 1,
        "final": out["budget_check"][target.key],
        "part_seconds": {
            "measure": state["measure_seconds"],
            "fit": fitted["seconds"],
            "search_this_run": time.perf_counter() - t0,
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
