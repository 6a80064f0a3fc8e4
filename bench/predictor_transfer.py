"""Latency predictors from few measurements, alone and with other targets as sources.

    python -m bench predictor_transfer --file MEAS.jsonl [--space ofa-mbv3] [--work DIR]
    python bench/predictor_transfer.py --file MEAS.jsonl --space ofa-mbv3 --work DIR

MEAS.jsonl is in the import format of `hwnas measure --import`, every line naming its
`target` (`bench/transfer_measure.py` writes one from this machine's targets). The subnets
measured on every target are split once: 30% held out (never seen by any predictor, sources
included), the rest the pool. Per target (left out) and training size n (10, 20, 50, 100,
500 where the pool holds them), `--draws` random draws of n subnets from the pool; on each,
scored on the held-out subnets (Kendall tau, within +-5% / +-10%, fit seconds):
- `alone`: the main model on the n measurements (as `hwnas predictor fit` fitted before);
- `chosen`: the model `hwnas predictor fit` now chooses with no other target
  (`hwnas.latency.choice`);
- `transfer`: its choice with the other targets as sources (their main models fitted on the
  whole pool);
- `best_feature`: the best single feature (a + b * layers, MACs or activation volume) by its
  held-out tau (the oracle's pick: a conservative baseline), and `macs`.
Medians over the draws. Resumable: every (target, n, draw) is appended to DIR/scores.jsonl as
it is done. The last stdout line is the JSON summary.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from hwnas.latency.choice import FEATURES, choose, feature_model
from hwnas.latency.features import Encoded, SpaceTables
from hwnas.latency.measurement_file import read_measurements
from hwnas.latency.predictor import fit_main, metrics
from hwnas.supernet.space import load_space

SIZES = (10, 20, 50, 100, 500)
KEYS = ("kendall", "within5", "within10", "mape")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load(path: str, space) -> tuple[dict[str, dict[str, float]], dict]:
    """target -> subnet key -> latency (the median where a subnet is measured twice), and the
    subnets by key."""
    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    subnets = {}
    for m in read_measurements(path, space, local=True):
        per[m.target.key][m.subnet.key].append(m.latency_ms)
        subnets[m.subnet.key] = m.subnet
    return {t: {k: float(np.median(v)) for k, v in d.items()} for t, d in per.items()}, subnets


def scores(pred: np.ndarray, y: np.ndarray) -> dict:
    m = metrics(pred, y)
    return {k: m[k] for k in KEYS}


class Data:
    """The common subnets, encoded once, their latency per target, and the split."""

    def __init__(self, per: dict, subnets: dict, space, test_share: float, seed: int) -> None:
        common = sorted(set.intersection(*(set(d) for d in per.values())))
        self.space, self.t = space, SpaceTables(space)
        self.enc = self.t.encode([subnets[k] for k in common])
        self.y = {target: np.asarray([d[k] for k in common]) for target, d in per.items()}
        order = np.random.default_rng((seed, 3)).permutation(len(common))
        k = round(test_share * len(common))
        self.test, self.pool = np.sort(order[:k]), np.sort(order[k:])

    def take(self, idx: np.ndarray) -> Encoded:
        return self.enc.take(idx)


def fit_sources(data: Data) -> dict:
    """Every target's main model on the whole pool."""
    enc = data.take(data.pool)
    return {k: fit_main(data.space, data.t, enc, y[data.pool]) for k, y in data.y.items()}


def one_draw(data: Data, target: str, n: int, draw: int, sources: dict) -> dict:
    rng = np.random.default_rng((draw, n, 17))
    train = rng.choice(data.pool, n, replace=False)
    enc, y = data.take(train), data.y[target][train]
    test_enc, test_y = data.take(data.test), data.y[target][data.test]
    out = {"target": target, "n": n, "draw": draw}
    t0 = time.perf_counter()
    alone = fit_main(data.space, data.t, enc, y)
    out["alone"] = scores(alone.predict_encoded(data.t, test_enc), test_y)
    out["alone"]["fit_s"] = time.perf_counter() - t0
    others = {k: p for k, p in sources.items() if k != target}
    for name, srcs in (("chosen", None), ("transfer", others)):
        t0 = time.perf_counter()
        c = choose(data.space, data.t, enc, y, sources=srcs)
        seconds = time.perf_counter() - t0
        out[name] = scores(c.predictor.predict_encoded(data.t, test_enc), test_y)
        out[name] |= {"fit_s": seconds, "model": c.model}
    feats = {}
    for f in FEATURES:
        cands = choose_feature(data, enc, y, f)
        feats[f] = scores(cands.predict_encoded(data.t, test_enc), test_y)
    best = max(feats, key=lambda f: feats[f]["kendall"])
    out["best_feature"] = feats[best] | {"feature": best}
    out["macs"] = feats["macs"]
    return out


def choose_feature(data: Data, enc: Encoded, y: np.ndarray, feature: str):
    """a + b * `feature` fitted on (enc, y)."""
    return feature_model(data.space, data.t, feature)(enc, y, np.ones(len(y)))


def median_row(rows: list[dict]) -> dict:
    out = {}
    for part in ("alone", "chosen", "transfer", "best_feature", "macs"):
        vals = {k: float(np.median([r[part][k] for r in rows])) for k in KEYS}
        if "fit_s" in rows[0][part]:
            vals["fit_s"] = float(np.median([r[part]["fit_s"] for r in rows]))
        for label in ("model", "feature"):
            if label in rows[0][part]:
                vals[label + "s"] = dict(Counter(r[part][label] for r in rows))
        out[part] = vals
    return out


def run(args: argparse.Namespace) -> dict:
    space = load_space(args.space)
    per, subnets = load(args.file, space)
    data = Data(per, subnets, space, args.test_share, args.seed)
    log(f"{len(per)} targets, {len(data.enc.r)} common subnets: {len(data.pool)} pool, "
        f"{len(data.test)} held out")  # fmt: skip
    work = Path(args.work) if args.work else None
    done = read_done(work)
    sources = fit_sources(data)
    rows = []
    for target in sorted(per):
        for n in (s for s in SIZES if s <= len(data.pool)):
            for draw in range(args.draws):
                key = (target, n, draw)
                if key not in done:
                    done[key] = one_draw(data, target, n, draw, sources)
                    save(work, done[key])
                rows.append(done[key])
            log(f"{target} n={n}: " + summary_line(median_row([r for r in rows if
                (r["target"], r["n"]) == (target, n)])))  # fmt: skip
    return summarise(rows, data)


def summary_line(m: dict) -> str:
    parts = []
    for k in ("alone", "chosen", "transfer", "best_feature"):
        parts.append(f"{k} tau {m[k]['kendall']:.3f} w10 {m[k]['within10']:.2f}")
    return "; ".join(parts)


def read_done(work: Path | None) -> dict:
    if work is None or not (work / "scores.jsonl").exists():
        return {}
    rows = [json.loads(line) for line in (work / "scores.jsonl").read_text().splitlines()]
    return {(r["target"], r["n"], r["draw"]): r for r in rows}


def save(work: Path | None, row: dict) -> None:
    if work is None:
        return
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "scores.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def summarise(rows: list[dict], data: Data) -> dict:
    curves: dict[str, dict[int, dict]] = defaultdict(dict)
    for target in sorted({r["target"] for r in rows}):
        for n in sorted({r["n"] for r in rows}):
            sel = [r for r in rows if r["target"] == target and r["n"] == n]
            if sel:
                curves[target][n] = median_row(sel)
    at10 = [c[10]["transfer"] for c in curves.values() if 10 in c]
    return {
        "targets": sorted(curves),
        "n_common": len(data.enc.r),
        "n_test": len(data.test),
        "curves": curves,
        "transfer_at_10": {
            "median_kendall": float(np.median([m["kendall"] for m in at10])),
            "median_within10": float(np.median([m["within10"] for m in at10])),
        },
        "below_best_feature": [
            {
                "target": t,
                "n": n,
                "chosen": c["chosen"]["kendall"],
                "best_feature": c["best_feature"]["kendall"],
            }
            for t, cs in curves.items()
            for n, c in cs.items()
            if n >= 20 and c["chosen"]["kendall"] < c["best_feature"]["kendall"]
        ],
    }


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--file", required=True, help="measurements, import format with targets")
    p.add_argument("--space", default="ofa-mbv3", help="the space of its subnets")
    p.add_argument("--work", default=None, help="resumable folder for the scores")
    p.add_argument("--draws", type=int, default=5, help="random training sets per size")
    p.add_argument("--test-share", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def main() -> None:
    print(json.dumps(run(parse_args())))


if __name__ == "__main__":
    main()
