"""Latency predictor accuracy on real measurements of this machine, main model vs baselines.

    python bench/predictor_accuracy.py [--db URL] [--run NAME] [--targets cpu,tflite]
                                       [--n-train 300] [--n-test 300] [--n-noise 100]
                                       [--max-ms 2000] [--test-max-ms MS]
    python bench/predictor_accuracy.py --results R.jsonl [--noise-results N.jsonl]

For each target: random subnets of the run's space are measured with the protocol of
`hwnas measure` (training and held-out sets disjoint), every lookup-table layer is measured
alone (the LUT baseline), and a subset of the held-out subnets is measured again at the end
(the noise floor: how often two measurements of the same subnet agree within 5% / 10%,
corrected for the machine's drift in between by reference subnets measured again, and raw). The
main predictor and both baselines are fitted on the training set and scored on the held-out
set (share within +-5% / +-10%, MAPE, Kendall tau). A learning curve gives the number of
training measurements the main predictor needs to reach tau >= 0.9, with and without the
layer table, and the wall time spent measuring them. `by_drift` splits the held-out scores
between subnets measured while the machine held its speed (within 3% of the references'
baseline) and those measured in a busy spell. Also: batched prediction throughput
(subnets/s). The last stdout line is JSON.
Measurements are not stored in the database (the bench is self-contained). On a noisy machine
the held-out measurements' own noise bounds every predictor's score (on `cpu` here, a median's
error of ~1.5% at 2 s a model held Kendall tau near 0.94); `--test-max-ms` gives the held-out
subnets a longer time budget, measured after the rest, so that they are a steadier ground truth.
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

from hwnas.db.session import open_db
from hwnas.latency.drift import N_REFS
from hwnas.latency.features import SpaceTables, table_layers
from hwnas.latency.jobs import parse_result, read_lines
from hwnas.latency.predictor import fit_lut, fit_macs, fit_main, holdout_split, metrics
from hwnas.latency.prepare import JobBuilder, block_key
from hwnas.latency.protocol import Protocol
from hwnas.latency.targets import Target
from hwnas.latency.workdir import TargetWork
from hwnas.search.output import show_logs
from hwnas.search.services.measuring import agreement, remeasure_agreement, sample_subnets
from hwnas.search.services.model_source import RunContext, SpaceContext
from hwnas.search.services.prediction import lut_vector
from hwnas.search.services.recorded_runs import load_run
from hwnas.supernet.compile_cache import enable_compile_cache
from hwnas.supernet.space import SpaceError, load_space

CURVE = (10, 20, 40, 80, 160, 300)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def measure_target(ctx, target: Target, subnets, args, work: Path, protocol: Protocol):
    """Latency of `subnets` (ms), block LUT, noise re-measurements, and the time spent, all
    kept in the work folder (`latency/workdir.py`) as they are done. With `--test-max-ms`,
    the held-out subnets (and their re-measurement) are measured after the rest with that
    time budget, their drift since taken out by reference training subnets measured again."""
    tw = TargetWork(work, target)
    jobs = tw.prepare(wanted_jobs(ctx, subnets), job_builder(ctx, target, tw.models), log)
    subnet_jobs = [j for j in jobs if j.kind == "subnet"]
    refs = subnet_jobs[:N_REFS]
    test_protocol = protocol
    if args.test_max_ms is None:
        results = tw.measure("all", jobs, refs, protocol, log)
    else:
        test_protocol = dataclasses.replace(protocol, max_ms=args.test_max_ms)
        test = subnet_jobs[args.n_train :]
        held = {j.id for j in test}
        results = tw.measure("train", [j for j in jobs if j.id not in held], refs, protocol, log)
        results |= tw.measure("held-out", test, refs, test_protocol, log)
    y = np.asarray([results[j.id].stats["median_ms"] for j in subnet_jobs])
    blocks = {results[j.id].subnet_key: results[j.id].stats["median_ms"]
              for j in jobs if j.kind == "block"}  # fmt: skip
    cvs = np.asarray([results[j.id].stats["cv"] for j in subnet_jobs])
    # the last held-out subnets, measured again after everything else
    again_jobs = subnet_jobs[-args.n_noise :]
    again = tw.measure("again", again_jobs, refs, test_protocol, log)
    noise = remeasure_agreement([results[j.id].stats for j in again_jobs],
                                [again[j.id].stats for j in again_jobs]).to_json()  # fmt: skip
    raw = {
        "keys": [j.subnet_key for j in subnet_jobs],
        "latency_ms": y.tolist(),
        "drift": [results[j.id].stats["drift"] for j in subnet_jobs],
        "again_ms": [again[j.id].stats["median_ms"] for j in again_jobs],
        "blocks": blocks,
    }
    return y, blocks, cvs, noise, tw, raw


def wanted_jobs(ctx, subnets) -> list[tuple]:
    """(kind, subnet or layer, key) of every job: the subnets, then each table layer."""
    t = SpaceTables(ctx.space)
    layers = {block_key(ly): ly for ly in table_layers(t)}
    return [("subnet", s, s.key) for s in subnets] + [("block", ly, k) for k, ly in layers.items()]


def job_builder(ctx, target: Target, model_dir: Path):
    builder = JobBuilder(ctx.space, ctx.variables, target, model_dir, ctx.representative,
                         ctx.name, ctx.weights)  # fmt: skip

    def build(kind: str, item):
        return builder.subnet_job(item) if kind == "subnet" else builder.block_job(item)

    return build


def spread(y: np.ndarray) -> dict:
    return {"min": float(y.min()), "median": float(np.median(y)), "max": float(y.max())}


def learning_curve(space, t, enc_train, y_train, enc_test, y_test, lut) -> list[dict]:
    out = []
    for n in CURVE:
        if n > len(y_train):
            break
        sub = type(enc_train)(enc_train.r[:n], enc_train.k[:n], enc_train.e[:n])
        p = fit_main(space, t, sub, y_train[:n], lut)
        out.append({"n_train": n, **metrics(p.predict_encoded(t, enc_test), y_test)})
    return out


def throughput(predictor, space, t, n: int = 200_000) -> float:
    rng = np.random.default_rng(3)
    enc = t.encode([space.sample(rng) for _ in range(2000)])
    reps = n // 2000
    big = type(enc)(np.tile(enc.r, reps), np.tile(enc.k, (reps, 1)), np.tile(enc.e, (reps, 1)))
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        predictor.predict_encoded(t, big)
        times.append(time.perf_counter() - t0)
    return len(big.r) / float(np.median(times))


def split_subnets(space, args) -> list:
    """`n_train` then `n_test` distinct subnets, each set with a share `--spread` of its
    subnets spread evenly over the size range (the rest uniform)."""
    train = sample_subnets(space, args.n_train, args.seed, args.spread)
    seen = {s.key for s in train}
    test = sample_subnets(space, args.n_test + len(train), args.seed + 1, args.spread)
    return train + [s for s in test if s.key not in seen][: args.n_test]


def bench_target(ctx, target, args, work) -> dict:
    space = ctx.space
    subnets = split_subnets(space, args)
    log(f"{target.key}: {len(subnets)} subnets and the lookup-table layers")
    protocol = Protocol(**{name: getattr(args, name) for name in PROTOCOL_FLAGS})
    if args.prepare_only:
        tw = TargetWork(work, target)
        tw.prepare(wanted_jobs(ctx, subnets), job_builder(ctx, target, tw.models), log)
        return {"target": target.key, "prepared": True}
    y, blocks, cvs, noise, tw, raw = measure_target(ctx, target, subnets, args, work, protocol)
    t = SpaceTables(space)
    enc = t.encode(subnets)
    tr, te = np.arange(args.n_train), np.arange(args.n_train, len(subnets))
    lut = lut_vector(t, blocks)
    t0 = time.perf_counter()
    models = {
        "main": fit_main(space, t, enc.take(tr), y[tr], lut),
        "macs": fit_macs(space, t, enc.take(tr), y[tr]),
        "lut": fit_lut(space, t, enc.take(tr), y[tr], lut),
    }
    fit_s = time.perf_counter() - t0
    scores = {k: metrics(m.predict_encoded(t, enc.take(te)), y[te]) for k, m in models.items()}
    curve = learning_curve(space, t, enc.take(tr), y[tr], enc.take(te), y[te], lut)
    bare = learning_curve(space, t, enc.take(tr), y[tr], enc.take(te), y[te], None)
    need = next((c["n_train"] for c in curve if c["kendall"] >= TAU_GOAL), None)
    need_bare = next((c["n_train"] for c in bare if c["kendall"] >= TAU_GOAL), None)
    per_subnet, per_block = tw.seconds_per("subnet"), tw.seconds_per("block")
    drift = np.asarray(raw["drift"])[te]
    return {
        "target": target.key,
        "space": space.name,
        "resolutions": list(space.resolutions),
        "weights": ctx.weights,
        "n_train": len(tr),
        "n_test": len(te),
        "n_blocks": len(blocks),
        "protocol": dataclasses.asdict(protocol),
        "test_max_ms": args.test_max_ms,
        "latency_ms": spread(y),
        "median_cv": float(np.median(cvs)),
        "noise_floor": noise,
        "scores": scores,
        "by_drift": by_drift(models, t, enc.take(te), y[te], drift),
        "learning_curve": curve,
        "learning_curve_no_table": bare,
        f"n_for_tau_{TAU_GOAL}": need,
        f"n_for_tau_{TAU_GOAL}_no_table": need_bare,
        f"seconds_for_tau_{TAU_GOAL}_no_table": None
        if need_bare is None
        else need_bare * per_subnet,
        "seconds_per_subnet": per_subnet,
        "seconds_per_block": per_block,
        "seconds_for_layer_table": per_block * len(blocks),
        f"seconds_for_tau_{TAU_GOAL}": None
        if need is None
        else need * per_subnet + per_block * len(blocks),
        "clock": tw.clock(),
        "fit_seconds": fit_s,
        "predictions_per_s": throughput(models["main"], space, t),
        "raw": raw,
    }


TAU_GOAL = 0.9

# A held-out subnet whose measurement ran more than this much slower or faster than the
# references' baseline (its `drift`) was measured in a busy spell of the machine.
STEADY = 0.03


def by_drift(models: dict, t, enc, y: np.ndarray, drift: np.ndarray) -> dict:
    """Each model's scores on the held-out subnets measured while the machine held its speed
    (drift within `STEADY`) and on those measured in a busy spell: where the misses of every
    model fall in the busy spell, the measurement, not the model, bounds the score."""
    steady = np.abs(np.log(drift)) <= np.log1p(STEADY)
    out = {}
    for name, mask in (("steady", steady), ("busy", ~steady)):
        idx = np.flatnonzero(mask)
        if len(idx) >= 2:
            sub = enc.take(idx)
            out[name] = {k: metrics(m.predict_encoded(t, sub), y[idx]) for k, m in models.items()}
            out[name]["drift"] = spread(drift[idx])
    return out


def bench_results(ctx, path: str, noise_path: str | None) -> dict:
    """Score the predictors on a worker's results file measured elsewhere (`--results`): the
    subnets split in halves at random, the layers (if any) as the lookup table, and the
    re-measured subnets of `noise_path` (if given) against their first medians, raw."""
    results = read_lines(Path(path), parse_result)
    subs = [r for r in results if r.kind == "subnet"]
    blocks = {r.subnet_key: r.stats["median_ms"] for r in results if r.kind == "block"}
    space = ctx.space
    t = SpaceTables(space)
    enc = t.encode([space.subnet_from_dict(r.subnet) for r in subs])
    y = np.asarray([r.stats["median_ms"] for r in subs])
    tr, te = holdout_split(len(subs), 0.5, 0)

    def sub(idx):
        return type(enc)(enc.r[idx], enc.k[idx], enc.e[idx])

    lut = lut_vector(t, blocks)
    models = {
        "main": fit_main(space, t, sub(tr), y[tr], None if np.isnan(lut).any() else lut),
        "macs": fit_macs(space, t, sub(tr), y[tr]),
    }
    if not np.isnan(lut).any():
        models["lut"] = fit_lut(space, t, sub(tr), y[tr], lut)
    out = {
        "target": subs[0].target.key,
        "fingerprint": subs[0].fingerprint,
        "n_train": len(tr),
        "n_test": len(te),
        "n_blocks": len(blocks),
        "latency_ms": spread(y),
        "median_cv": float(np.median([r.stats["cv"] for r in subs])),
        "scores": {k: metrics(m.predict_encoded(t, sub(te)), y[te]) for k, m in models.items()},
        "learning_curve": learning_curve(space, t, sub(tr), y[tr], sub(te), y[te], None),
    }
    if noise_path:
        first = {r.subnet_key: r.stats["median_ms"] for r in subs}
        again = read_lines(Path(noise_path), parse_result)
        out["noise_floor_raw"] = agreement(
            np.asarray([first[r.subnet_key] for r in again]),
            np.asarray([r.stats["median_ms"] for r in again]),
        ).to_json()
    return out


# The protocol settings a run can change, recorded with its figures (the rule before
# 2026-11-30: --rewarm-calls 1 --passes 1 --max-reps 200 --max-ms inf).
PROTOCOL_FLAGS = {
    "per_round": "timed calls per visit",
    "rewarm_calls": "untimed calls when a visit starts",
    "rewarm_ms": "... or fewer once this many ms have passed",
    "passes": "passes over all the jobs, the repetitions split among them",
    "min_reps": "repetitions at least",
    "max_reps": "repetitions at most",
    "max_ms": "... or fewer once their timed calls have taken this many ms",
}


def context(args):
    """The models' source: `--space` (initialised weights, `--resolutions` kept) or `--run`."""
    if args.space:
        space = load_space(args.space)
        if args.resolutions:
            res = tuple(int(r) for r in args.resolutions.split(","))
            space = dataclasses.replace(space, resolutions=res)
        return SpaceContext(space)
    with open_db(args.db, create=False) as db:
        return RunContext(load_run(db, args.run))


def main() -> None:
    show_logs()  # the services' progress on stderr, as the CLI shows it
    args = parse_args()
    enable_compile_cache()
    try:
        ctx = context(args)
    except SpaceError as e:
        sys.exit(f"error: {e}")
    label = {"space": args.space} if args.space else {"run": args.run}
    if args.results:
        row = bench_results(ctx, args.results, args.noise_results)
        text = json.dumps(label | {"targets": [row]})
        if args.out:
            Path(args.out).write_text(text + "\n")
        print(text)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="hwnas-bench-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for key in args.targets.split(","):
            rows.append(bench_target(ctx, Target.parse(key), args, work))
            log_scores(key, rows[-1])
            text = json.dumps(label | {"targets": rows})
            if args.out:  # after every target, so a later failure keeps the earlier figures
                Path(args.out).write_text(text + "\n")
    print(text)


def log_scores(key: str, row: dict) -> None:
    for k, v in row.get("scores", {}).items():
        log(
            f"{key:16s} {k:5s} within5 {v['within5']:.3f} within10 {v['within10']:.3f} "
            f"MAPE {v['mape']:.2f}% tau {v['kendall']:.3f}"
        )
    if "noise_floor" in row:
        log(f"{key:16s} noise floor {row['noise_floor']}")
    for part, scores in row.get("by_drift", {}).items():
        main = scores["main"]
        log(
            f"{key:16s} {part} ({main['n']} held out, drift {scores['drift']}): main within5 "
            f"{main['within5']:.3f} within10 {main['within10']:.3f} tau {main['kendall']:.3f}"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=None)
    parser.add_argument("--run", default="digits", help="measure this trained run's subnets")
    parser.add_argument(
        "--space", default=None,
        help="... or this space's (preset or file), weights initialised: no run needed",
    )  # fmt: skip
    parser.add_argument(
        "--resolutions", default=None, help="with --space: keep these resolutions (160,192,224)"
    )
    parser.add_argument("--targets", default="tflite-fp32-t1,cpu")
    parser.add_argument("--n-train", type=int, default=300)
    parser.add_argument("--n-test", type=int, default=300)
    parser.add_argument("--n-noise", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--spread", type=float, default=0.0,
        help="share of each set's subnets spread evenly over the size range (the rest uniform)",
    )  # fmt: skip
    for name, text in PROTOCOL_FLAGS.items():
        default = getattr(Protocol, name)
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=type(default), default=default, help=text)
    parser.add_argument(
        "--test-max-ms",
        type=float,
        default=None,
        help="measure the held-out subnets after the rest with this time budget (a steadier "
        "ground truth on a noisy machine; --max-reps still caps it); default: all together, "
        "with --max-ms",
    )
    parser.add_argument("--out", default=None)
    parser.add_argument(
        "--work", default=None,
        help="keep prepared models and measurements here; a later run with the same folder "
        "and options continues where this one stopped",
    )  # fmt: skip
    parser.add_argument(
        "--prepare-only", action="store_true", help="prepare the models (into --work) only"
    )
    parser.add_argument(
        "--results", default=None, help="score a worker's results file (measured elsewhere)"
    )
    parser.add_argument("--noise-results", default=None, help="its re-measured subnets")
    args = parser.parse_args()
    if args.n_train < N_REFS:
        parser.error(f"--n-train must be at least {N_REFS} (the drift references)")
    if args.prepare_only and not args.work:
        parser.error("--prepare-only needs --work DIR")
    return args


if __name__ == "__main__":
    main()
