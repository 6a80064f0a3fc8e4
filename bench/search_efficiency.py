"""Sample efficiency of the search's samplers: hypervolume after 50, 100, 200, 500 trials.

    python bench/search_efficiency.py [--db URL] [--run digits] [--target tflite-fp32-t1]
        [--samplers tpe,nsga2,random] [--seeds 3] [--trials 500] [--out FILE]
        [--accuracy supernet,predictor] [--accuracy-predictor ID] [--select-half]

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

`--accuracy supernet,predictor` runs every sampler and seed twice: trials scored by the
supernet, and by the run's accuracy predictor (`hwnas accuracy fit`), as `hwnas search
--accuracy predictor --no-measure` runs it: the same `--trials` split evenly into
`--accuracy-rounds` + 1 rounds, each round's front re-scored with the supernet, the predictor
refitted and the search told the supernet's accuracy where known while a round brings new
subnets onto that front (`predictor_rounds`; `--accuracy-rounds 0`, the default: one round,
its front re-scored once). Two differences from a search on a database: the refit learns
from the run's fitted samples (train and held-out) and this search's re-scored subnets only,
not from fronts other searches re-scored; and every re-scored subnet counts as evaluated (the
supernet's cache is emptied before each run), where `hwnas search` reuses a subnet the run
already has a sample of, so its count is at most the bench's. The
comparison (`accuracy_modes`): per sampler, the hypervolume of the re-scored front against the
supernet-driven search's final hypervolume (same seeds, same trials, one reference point; per
seed, and the median over seeds of each), the subnets re-scored, and each mode's wall time,
re-scoring included, with the supernet's cache emptied before each run, and the metric's
resolution: how much hypervolume the supernet search's front loses when its most accurate
subnets get one validation image more wrong (on a small validation split, one image at the
top of the front outweighs the differences the comparison is after).

`--select-half` separates choosing from judging: the supernet's accuracy on the even images of
the validation split drives the supernet search and re-scores the predictor-driven one (the
accuracy predictor fitted again on its subnets' even-image accuracy), each front is picked on
it, and both are scored on the odd images, which chose nothing. Scored on
the images that chose them, the supernet search's front gains from the evaluations it found
lucky (a winner's curse the predictor-driven search shares less), so the plain comparison
leans towards it where the supernet's split-half agreement is low.
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

from hwnas.db.session import open_db
from hwnas.latency.targets import Target
from hwnas.search.accuracy_predictor import encode
from hwnas.search.accuracy_predictor import fit as fit_accuracy
from hwnas.search.initial_design import enqueue_initial
from hwnas.search.objective import Problem, TrialEvaluator, make_objective
from hwnas.search.output import show_logs
from hwnas.search.pareto import hypervolume_2d, near_front
from hwnas.search.samplers import make_sampler
from hwnas.search.search_config import N_INITIAL
from hwnas.search.services import accuracy_fit as accuracy_service
from hwnas.search.services import rounds as rounds_
from hwnas.search.services.recorded_runs import load_run, oracle_for
from hwnas.search.services.search import build_evaluator, load_predictors
from hwnas.supernet.space import SearchSpace

CHECKPOINTS = (50, 100, 200, 500)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load(db_url: str | None, run_name: str, target: str, modes: list[str], acc_id: int | None):
    """The space, the problem, and per accuracy mode its trial evaluator."""
    with open_db(db_url, create=False) as db:
        run = load_run(db, run_name)
        problem = Problem((Target.parse(target).key,))
        predictors = load_predictors(db, SearchSpace.from_dict(run.space), problem, run_name)
        fitted = accuracy_service.load(db, run, acc_id) if "predictor" in modes else None
    evaluate = {"supernet": build_evaluator(run, predictors)}
    space = evaluate["supernet"].space
    if fitted is not None:
        evaluate["predictor"] = TrialEvaluator(space, fitted.predictor, predictors, False)
    band = fitted.band if fitted is not None else 0.0
    return space, problem, evaluate, oracle_for(run), band


def fit_samples(db_url: str | None, run_name: str, even: bool, roles=("train", "held-out")):
    """The subnets `hwnas accuracy fit` evaluated for the run (`roles`; not the fronts of
    earlier searches) and their supernet accuracy (`even`: on the even validation images)."""
    with open_db(db_url, create=False) as db:
        run = load_run(db, run_name)
        samples = accuracy_service.load_samples(db, run)
    space = SearchSpace.from_dict(run.space)
    rows = [v for v in samples.values() if v.role in roles]
    return ([space.subnet_from_dict(v.subnet) for v in rows],
            [v.halves[0] if even else v.accuracy for v in rows])  # fmt: skip


def even_half_predictor(db_url: str | None, run_name: str, space, kind: str):
    """`--select-half`: the run's accuracy predictor (same kind) fitted again on its training
    subnets' accuracy on the even validation images only, so that it knows nothing of the odd
    images the fronts are scored on."""
    subnets, y = fit_samples(db_url, run_name, True, ("train",))
    return fit_accuracy(kind, space, encode(space, subnets), np.asarray(y))


ABLATION = "-random-start"


def run_one(space, problem, evaluate, sampler: str, seed: int, trials: int, initial: int):
    base = sampler.removesuffix(ABLATION)
    study = optuna.create_study(directions=problem.directions, sampler=make_sampler(base, seed))
    enqueue_initial(study, space, base, 0 if sampler.endswith(ABLATION) else initial, seed)
    t0 = time.perf_counter()
    study.optimize(make_objective(space, problem, evaluate), n_trials=trials)
    wall = time.perf_counter() - t0
    points = [[1 - t.values[0], t.values[1]] for t in study.trials]
    return {"sampler": sampler, "seed": seed, "points": points, "trials_per_s": trials / wall,
            "wall_s": wall, "study": study}  # fmt: skip


def predictor_rounds(space, problem, evaluate, score, base, sampler: str, seed: int,
                     trials: int, rounds: int, initial: int, band: float) -> dict:  # fmt: skip
    """A predictor-driven search as `hwnas search --accuracy predictor --no-measure` runs it,
    in memory: `trials` split into `rounds` + 1 rounds (`--trials F --rounds R --round-trials
    S`, F + R * S = trials). Each round ends as the search's do: every trial on or within
    `band` of the front (the supernet's accuracy where a trial has one, else the predicted)
    is evaluated with the supernet (`score`); unless that brought no new subnet onto the
    front re-scored with the supernet, the accuracy predictor is fitted again on `base` (the
    run's samples: subnets, accuracies) plus every re-scored subnet, and the next round's
    study starts from every trial, told the supernet's accuracy where known
    (`hwnas.search.services.rounds`). Returns the re-scored points and subnets, the trial rate
    (trials only), the wall time (re-scoring and refits included) and the rounds run."""
    step = trials // (rounds + 1)
    quota = trials - rounds * step
    pred, lat = evaluate._accuracy, evaluate._predictors
    study = optuna.create_study(directions=problem.directions, sampler=make_sampler(sampler, seed))
    enqueue_initial(study, space, sampler, initial, seed)
    scored: dict[str, tuple] = {}  # subnet key -> (supernet accuracy, subnet, latency)
    front: set[str] = set()
    trial_s = between_s = 0.0
    for r in range(rounds + 1):
        t0 = time.perf_counter()
        ev = TrialEvaluator(space, pred, lat, False)
        study.optimize(make_objective(space, problem, ev, r), n_trials=quota - len(study.trials))
        trial_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        new_front = _rescore_band(study, space, score, band, scored)
        settled, front = not new_front - front, new_front
        if settled or r == rounds:
            between_s += time.perf_counter() - t0
            break
        pred = _refit(pred.kind, space, base, scored)
        study = _next_study(study, space, problem, pred, scored, sampler, seed, r + 1)
        quota += step
        between_s += time.perf_counter() - t0
    keys = list(scored)
    return {"points": [[1 - scored[k][0], scored[k][2]] for k in keys],
            "subnets": [scored[k][1] for k in keys], "rescored": len(keys), "rounds": r + 1,
            "trials": len(study.trials), "trials_per_s": len(study.trials) / trial_s,
            "wall_s": trial_s + between_s, "rescore_s": between_s}  # fmt: skip


def _rescore_band(study, space, score, band: float, scored: dict) -> set[str]:
    """Evaluate the trials within `band` of the front with the supernet (`scored`, in
    place); the keys of the front of the re-scored ones."""
    trials = study.trials
    subnets = trial_subnets(study, space)
    values = np.asarray([[t.values[0], t.values[1]] for t in trials])
    for i in np.flatnonzero(near_front(values[:, 0], values[:, 1:], band)):
        if subnets[i].key not in scored:
            scored[subnets[i].key] = (score(subnets[i]), subnets[i], float(values[i, 1]))
    keys = list(scored)
    pts = np.asarray([[scored[k][0], scored[k][2]] for k in keys])
    return {k for k, m in zip(keys, near_front(pts[:, 0], pts[:, 1:], 0.0), strict=True) if m}


def _refit(kind: str, space, base: tuple[list, list], scored: dict):
    subnets, y = list(base[0]), list(base[1])
    known = {s.key for s in subnets}
    for key, (acc, subnet, _) in scored.items():
        if key not in known:
            subnets.append(subnet)
            y.append(acc)
    return fit_accuracy(kind, space, encode(space, subnets), np.asarray(y))


def _next_study(study, space, problem, pred, scored: dict, sampler: str, seed: int, r: int):
    """Round `r`'s study: every trial re-scored by `pred`, told the supernet's accuracy
    where it has one (`rounds.copy_trials`)."""
    trials = study.trials
    subnets = trial_subnets(study, space)
    acc = pred.predict(subnets)
    rescored = {}
    for t, s, a in zip(trials, subnets, acc, strict=True):
        sup = scored[s.key][0] if s.key in scored else None
        rescored[t.number] = t.user_attrs["candidate"] | {"accuracy": float(a),
                                                         "accuracy_supernet": sup}  # fmt: skip
    new = optuna.create_study(directions=problem.directions, sampler=make_sampler(sampler, seed))
    new.add_trials(rounds_.copy_trials(trials, problem, rescored, r))
    return new


def held_out_front(points: list, subnets: list, oracle) -> list:
    """`--select-half`: the front of `points` (1 - accuracy on the even validation images,
    latency), scored on the odd images, which chose nothing: a search cannot profit there
    from the evaluations it happened to find lucky."""
    pts = np.asarray(points)
    on = near_front(1 - pts[:, 0], pts[:, 1:], 0.0)
    return [[1 - oracle.evaluate(s)[2], p[1]] for s, p, k in zip(subnets, points, on, strict=True)
            if k]  # fmt: skip


def trial_subnets(study: optuna.Study, space) -> list:
    return [space.subnet_from_dict(t.user_attrs["candidate"]["subnet"]) for t in study.trials]


def one_image_worse(points: np.ndarray, ref: np.ndarray, step: float) -> float:
    """Hypervolume of `points` with its most accurate ones one validation image (`step` of
    error) worse, over their own: the finest change the metric can see at the front's top."""
    worse = points.copy()
    worse[worse[:, 0] <= worse[:, 0].min(), 0] += step
    return hypervolume_2d(worse, ref) / hypervolume_2d(points, ref)


def compare_modes(runs: list[dict], samplers: list[str], n_val: int) -> dict:
    """Per sampler: the supernet-driven final hypervolume and the re-scored predictor-driven
    front's, over one reference box, their ratio, and each mode's wall time (medians); and
    the metric's resolution, `one_image` (per seed, the supernet search's hypervolume with
    its most accurate subnets one of the `n_val` validation images worse, over its own)."""
    by = {(r["sampler"], r["seed"], r["accuracy"]): r for r in runs}
    allpts = np.concatenate([np.asarray(r["points"]) for r in runs])
    lo, hi = allpts.min(axis=0), allpts.max(axis=0)
    ref = hi + 0.01 * (hi - lo)
    box = float(np.prod(ref - lo))
    out = {"reference": ref.tolist(), "ideal": lo.tolist()}
    for s in samplers:
        seeds = sorted({k[1] for k in by if k[0] == s and k[2] == "predictor"})
        hv = {m: [hypervolume_2d(np.asarray(by[s, i, m]["points"]), ref) / box for i in seeds]
              for m in ("supernet", "predictor")}  # fmt: skip
        ratio = [p / q for p, q in zip(hv["predictor"], hv["supernet"], strict=True)]
        out[s] = {
            "hv_supernet": hv["supernet"], "hv_predictor_rescored": hv["predictor"],
            "ratio": ratio, "ratio_median": float(np.median(ratio)),
            "ratio_of_medians": float(np.median(hv["predictor"]) / np.median(hv["supernet"])),
            "wall_s": {m: float(np.median([by[s, i, m]["wall_s"] for i in seeds]))
                       for m in ("supernet", "predictor")},
            "trials_per_s": {m: float(np.median([by[s, i, m]["trials_per_s"] for i in seeds]))
                             for m in ("supernet", "predictor")},
            "rescore_s": float(np.median([by[s, i, "predictor"]["rescore_s"] for i in seeds])),
            "rescored": [by[s, i, "predictor"]["rescored"] for i in seeds],
            "rounds": [by[s, i, "predictor"]["rounds"] for i in seeds],
            "predictor_trials": [by[s, i, "predictor"]["trials"] for i in seeds],
            "one_image": [one_image_worse(np.asarray(by[s, i, "supernet"]["points"]), ref,
                                          1 / n_val) for i in seeds],
        }  # fmt: skip
    return out


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
    parser.add_argument("--accuracy", default="supernet", help="supernet and/or predictor")
    parser.add_argument("--accuracy-predictor", type=int, default=None)
    parser.add_argument(
        "--accuracy-rounds",
        type=int,
        default=0,
        help="the predictor-driven search's later rounds; --trials is split evenly over all",
    )
    parser.add_argument(
        "--select-half",
        action="store_true",
        help="search and pick fronts on the even validation images, score them on the odd",
    )
    parser.add_argument(
        "--band",
        type=float,
        default=None,
        help="accuracy band re-scored around the front (default: the search's)",
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    modes = args.accuracy.split(",")
    space, problem, evaluate, oracle, band = load(args.db, args.run, args.target, modes,
                                                  args.accuracy_predictor)  # fmt: skip
    band = band if args.band is None else args.band
    if args.select_half:  # the supernet's accuracy on the even images drives and picks
        even = lambda s: oracle.evaluate(s)[1]  # noqa: E731
        evaluate["supernet"] = TrialEvaluator(space, even, evaluate["supernet"]._predictors)
        if "predictor" in modes:
            kind = evaluate["predictor"]._accuracy.kind
            evaluate["predictor"] = TrialEvaluator(
                space, even_half_predictor(args.db, args.run, space, kind),
                evaluate["supernet"]._predictors, False,
            )  # fmt: skip
    base = fit_samples(args.db, args.run, args.select_half) if "predictor" in modes else None
    samplers = args.samplers.split(",")
    runs = []
    for seed in range(args.seeds):
        for s in samplers:
            for mode in modes:
                oracle.clear_cache()  # every run pays for its own supernet evaluations
                if mode == "predictor":
                    score = even if args.select_half else oracle
                    r = predictor_rounds(
                        space,
                        problem,
                        evaluate[mode],
                        score,
                        base,
                        s.removesuffix(ABLATION),
                        seed,
                        args.trials,
                        args.accuracy_rounds,
                        0 if s.endswith(ABLATION) else args.initial,
                        band,
                    )
                    r |= {"sampler": s, "seed": seed}  # fmt: skip
                else:
                    r = run_one(space, problem, evaluate[mode], s, seed, args.trials, args.initial)
                    r["subnets"] = trial_subnets(r["study"], space)
                r["accuracy"] = mode
                if args.select_half:
                    r["points"] = held_out_front(r["points"], r["subnets"], oracle)
                runs.append(r)
                log(f"{s} seed {seed} {mode}: {r['trials_per_s']:.1f} trials/s, "
                    f"{r['wall_s']:.1f} s")  # fmt: skip
    result = {"run": args.run, "target": problem.targets[0], "trials": args.trials,
              "initial": args.initial, "accuracy": modes, "band": band}  # fmt: skip
    if set(modes) == {"supernet", "predictor"}:
        scored_on = oracle.n_val // 2 if args.select_half else oracle.n_val  # the odd images
        result["accuracy_modes"] = compare_modes(runs, samplers, scored_on)
        for s in samplers:
            row = result["accuracy_modes"][s]
            log(f"{s}: re-scored predictor front / supernet search hypervolume, median per "
                f"seed {row['ratio_median']:.4f}, of the medians {row['ratio_of_medians']:.4f}; "
                f"wall {row['wall_s']}; trials/s {row['trials_per_s']}; one validation "
                f"image at the front's top: {1 - np.median(row['one_image']):.2%}")  # fmt: skip
    runs = [r for r in runs if r["accuracy"] == "supernet"]  # the curves: trials in order
    if runs and not args.select_half:
        result |= summarise(runs, samplers, args.trials)
    for s in samplers if "hypervolume" in result else []:
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
