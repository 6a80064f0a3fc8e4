"""Sample efficiency of the search's samplers: hypervolume after 50, 100, 200, 500 trials.

    python bench/search_efficiency.py [--db URL] [--run digits] [--target tflite-fp32-t1]
        [--samplers tpe,nsga2,random] [--seeds 3] [--trials 500] [--out FILE]

Every sampler and seed searches the same problem that `hwnas search --target T` searches
(accuracy of the supernet's subnets after BN recalibration on the validation split, against
the target's fitted predictor; no budget), with the same objective code, in Optuna's in-memory
storage so that database time does not blur the comparison. Accuracies are cached by subnet, so
every run sees identical values. Hypervolume is over (1 - accuracy, latency ms) with the
reference point at the worst error and the largest latency seen in any run (plus 1%), divided
by the reference box, so 1.0 is unreachable and the figures of all runs are comparable. The
goal figure: how many trials the default sampler (tpe) needs, median over seeds, to reach the
median hypervolume random search has after 500. The last stdout line is JSON.

Model-based samplers start as `hwnas search` starts them, from its initial design (`--initial`
subnets spread evenly over the size range, `search/initial_design.py`); a sampler named with
the suffix `-random-start` (e.g. `tpe-random-start`) starts from Optuna's own random start-up
trials instead, the ablation of that design, measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import optuna

from db.session import open_db
from latency.targets import Target
from search.config import N_INITIAL
from search.initial_design import enqueue_initial
from search.objective import Problem, make_objective
from search.output import show_logs
from search.pareto import hypervolume_2d
from search.samplers import make_sampler
from search.services.runs import load_run
from search.services.search import build_evaluator, load_predictors
from supernet.space import SearchSpace

CHECKPOINTS = (50, 100, 200, 500)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load(db_url: str | None, run_name: str, target: str):
    with open_db(db_url, create=False) as db:
        run = load_run(db, run_name)
        problem = Problem((Target.parse(target).key,))
        predictors = load_predictors(db, SearchSpace.from_dict(run.space), problem, run_name)
    evaluate = build_evaluator(run, predictors)
    return evaluate.space, problem, evaluate


ABLATION = "-random-start"


def run_one(space, problem, evaluate, sampler: str, seed: int, trials: int, initial: int):
    base = sampler.removesuffix(ABLATION)
    study = optuna.create_study(directions=problem.directions, sampler=make_sampler(base, seed))
    enqueue_initial(study, space, base, 0 if sampler.endswith(ABLATION) else initial, seed)
    t0 = time.perf_counter()
    study.optimize(make_objective(space, problem, evaluate), n_trials=trials)
    wall = time.perf_counter() - t0
    points = [[1 - t.values[0], t.values[1]] for t in study.trials]
    return {"sampler": sampler, "seed": seed, "points": points, "trials_per_s": trials / wall}


def hv_curve(points: np.ndarray, ref: np.ndarray, box: float) -> np.ndarray:
    return np.asarray([hypervolume_2d(points[: n + 1], ref) / box for n in range(len(points))])


def trials_to_reach(curve: np.ndarray, level: float) -> int | None:
    hit = np.flatnonzero(curve >= level)
    return int(hit[0]) + 1 if len(hit) else None


def summarise(runs: list[dict], samplers: list[str], trials: int) -> dict:
    allpts = np.concatenate([np.asarray(r["points"]) for r in runs])
    lo, hi = allpts.min(axis=0), allpts.max(axis=0)
    ref = hi + 0.01 * (hi - lo)
    box = float(np.prod(ref - lo))
    for r in runs:
        r["curve"] = hv_curve(np.asarray(r["points"]), ref, box)
    marks = sorted({c for c in CHECKPOINTS if c <= trials} | {trials})
    table = {}
    for s in samplers:
        mine = [r for r in runs if r["sampler"] == s]
        table[s] = {
            str(c): {
                "median": float(np.median([r["curve"][c - 1] for r in mine])),
                "per_seed": [float(r["curve"][c - 1]) for r in mine],
            }
            for c in marks
        }
        table[s]["trials_per_s"] = float(np.median([r["trials_per_s"] for r in mine]))
    out = {"reference": ref.tolist(), "ideal": lo.tolist(), "hypervolume": table}
    if "random" in samplers:
        level = table["random"][str(marks[-1])]["median"]
        out["random_final_hv"] = level
        out["trials_to_random_final"] = {
            s: {
                "median": _median_or_none(
                    [trials_to_reach(r["curve"], level) for r in runs if r["sampler"] == s]
                ),
                "per_seed": [
                    trials_to_reach(r["curve"], level) for r in runs if r["sampler"] == s
                ],
            }
            for s in samplers
        }
    return out


def _median_or_none(values: list[int | None]) -> float | None:
    """Median where a run that never reached the level counts as infinitely slow."""
    v = sorted(np.inf if x is None else x for x in values)
    m = float(np.median(v))
    return None if np.isinf(m) else m


def main() -> None:
    show_logs()  # the services' progress on stderr, as the CLI shows it
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=None)
    parser.add_argument("--run", default="digits")
    parser.add_argument("--target", default="tflite-fp32-t1")
    parser.add_argument("--samplers", default="tpe,nsga2,random")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--initial", type=int, default=N_INITIAL)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space, problem, evaluate = load(args.db, args.run, args.target)
    samplers = args.samplers.split(",")
    runs = []
    for seed in range(args.seeds):
        for s in samplers:
            runs.append(run_one(space, problem, evaluate, s, seed, args.trials, args.initial))
            log(f"{s} seed {seed}: {runs[-1]['trials_per_s']:.1f} trials/s")
    result = {"run": args.run, "target": problem.targets[0], "trials": args.trials,
              "initial": args.initial}  # fmt: skip
    result |= summarise(runs, samplers, args.trials)
    for s in samplers:
        row = result["hypervolume"][s]
        log(f"{s:7s} " + " ".join(f"{c}: {row[str(c)]['median']:.4f}" for c in CHECKPOINTS
                                  if str(c) in row))  # fmt: skip
    if "trials_to_random_final" in result:
        log(f"trials to random's final hypervolume: {result['trials_to_random_final']}")
    result["runs"] = [{k: r[k] for k in ("sampler", "seed", "points")} for r in runs]
    text = json.dumps(result)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
