"""`hwnas accuracy fit`: a predictor of a run's supernet accuracy, for searches whose supernet
evaluation is costly (`hwnas.search.accuracy_predictor`).

Subnets spread over the size range (`SearchSpace.sample_sized`) are evaluated with the
supernet (BN recalibrated, validation split, and each half of it) and kept in
`hwnas_accuracy_samples` by the run's training step, so a larger `--n` later evaluates only
the new ones. The predictor is fitted on the `train` samples and judged on `held-out` ones
beside the supernet's own noise: the Kendall tau between the two halves of the validation
split, the ceiling of how well any ranking of these subnets can be checked.

A search driven by the predictor ends each round with `rescore_front`: every candidate within
a band of the front (the predictor's cross-validated RMSE in accuracy) is evaluated with the
supernet, and the front is marked again on those supernet accuracies; `refit` fits the
predictor again with them for the next round (`hwnas.search.services.rounds`). How close its front
comes to a supernet-driven search's: `bench/search_efficiency.py --accuracy
supernet,predictor`, docs/results.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from hwnas.db.models import AccuracyPredictor as AccuracyPredictorRow
from hwnas.db.models import AccuracySample, Candidate, Run
from hwnas.db.session import Database, open_db
from hwnas.latency.metrics import kendall
from hwnas.search import candidates
from hwnas.search.accuracy_predictor import (
    AccuracyPredictor,
    AccuracyPredictorError,
    encode,
    fit_best,
)
from hwnas.search.accuracy_predictor import fit as fit_kind
from hwnas.search.output import UserError
from hwnas.search.pareto import near_front
from hwnas.search.services.recorded_runs import load_run, oracle_for
from hwnas.supernet.space import SearchSpace, Subnet
from sqlalchemy import select
from tqdm import tqdm

logger = logging.getLogger(__name__)

MODES = ("supernet", "predictor", "auto")  # what scores a search's trials (`--accuracy`)
AUTO_SECONDS = 0.5  # `auto` takes the accuracy predictor where a supernet evaluation costs more
HELD_OUT_SEED = 10_000  # the held-out sample's seed is the fit's seed plus this
BAND_RMSE = 1.0  # candidates this many predictor RMSEs of accuracy behind the front re-scored


@dataclass(frozen=True)
class Fitted:
    """A stored accuracy predictor: the model, its row id, and the accuracy band around a
    front it drove that is re-scored with the supernet."""

    predictor: AccuracyPredictor
    id: int
    band: float


def fit(
    db_url: str | None, run_name: str, n: int = 400, held_out: int = 100, seed: int = 0,
    progress: bool = True,
) -> dict:  # fmt: skip
    """Evaluate (or reuse) `n` training and `held_out` held-out subnets with the supernet,
    fit the best predictor by cross-validation, judge it on the held-out ones, store it."""
    if n < 10 or held_out < 0:
        raise UserError(f"--n must be at least 10 and --held-out at least 0, got {n}, {held_out}")
    with open_db(db_url, create=False) as db:
        run = load_run(db, run_name)
        space = SearchSpace.from_dict(run.space)
        train = spread(space, n, seed)
        if len(train) < 10:
            raise UserError(f"the space has only {len(train)} distinct subnets to fit on; "
                            "an accuracy predictor needs 10")  # fmt: skip
        test = spread(space, held_out, seed + HELD_OUT_SEED, {s.key for s in train})
        oracle = oracle_for(run)
        t0 = time.perf_counter()
        fresh = evaluate(db, run, oracle.evaluate, train, "train", progress)
        fresh += evaluate(db, run, oracle.evaluate, test, "held-out", progress)
        eval_s = time.perf_counter() - t0
        samples = load_samples(db, run)
        y = np.asarray([samples[s.key][0] for s in train])
        t0 = time.perf_counter()
        predictor, cv = fit_best(space, encode(space, train), y, seed)
        fit_s = time.perf_counter() - t0
        metrics = {"cv": cv, "rmse": cv[predictor.kind]["rmse"], "fit_seconds": fit_s}
        metrics |= judge(predictor, test, samples)
        pid = store(db, run, predictor, len(train), metrics)
    return {
        "run": run_name,
        "predictor": pid,
        "kind": predictor.kind,
        "n_train": len(train),
        "evaluated": fresh,
        "eval_seconds_per_subnet": eval_s / fresh if fresh else None,
    } | metrics


def check_mode(accuracy: str) -> None:
    if accuracy not in MODES:
        raise UserError(f"unknown --accuracy {accuracy!r}; choose {', '.join(MODES)}")


def source(db: Database, run: Run, mode: str, predictor_id: int | None) -> int | None:
    """The accuracy predictor's row id that scores trials, or None for the supernet: `auto`
    takes the run's predictor where one fits and the supernet costs over `AUTO_SECONDS` for
    the largest subnet (timed here, compiled)."""
    if mode == "supernet":
        return None
    if mode == "predictor":
        return load(db, run, predictor_id).id
    try:
        pid = load(db, run, predictor_id).id
    except UserError:
        return None
    seconds = oracle_for(run).seconds_per_subnet()
    use = seconds > AUTO_SECONDS
    logger.info(
        f"accuracy: a supernet evaluation takes {seconds:.2f} s for the largest subnet; "
        f"{'the accuracy predictor' if use else 'the supernet'} scores the trials"
    )
    return pid if use else None


def spread(space: SearchSpace, n: int, seed: int, exclude: set[str] = frozenset()) -> list:
    """`n` distinct subnets spread over the size range, none of `exclude` (the same seed
    gives the same list, and a larger `n` extends it)."""
    rng = np.random.default_rng(seed)
    out: dict[str, Subnet] = {}
    for _ in range(50 * n):
        if len(out) == n:
            break
        s = space.sample_sized(rng)
        if s.key not in exclude:
            out.setdefault(s.key, s)
    return list(out.values())


Evaluate = Callable[[Subnet], tuple[float, float, float]]


def evaluate(
    db: Database, run: Run, oracle: Evaluate, subnets: Sequence[Subnet], role: str,
    progress: bool = False,
) -> int:  # fmt: skip
    """Evaluate and store the subnets not yet stored for the run's weights; how many were."""
    have = load_samples(db, run)
    todo = [s for s in subnets if s.key not in have]
    for subnet in tqdm(todo, desc=f"accuracy ({role})", unit="subnet", disable=not progress):
        acc, even, odd = oracle(subnet)
        with db.write() as s:
            s.add(AccuracySample(run_id=run.id, step=run.steps, subnet_key=subnet.key,
                                 subnet=subnet.to_dict(), accuracy=acc, halves=[even, odd],
                                 role=role))  # fmt: skip
    return len(todo)


def load_samples(db: Database, run: Run) -> dict:
    """subnet key -> (accuracy, [even, odd], role, subnet dict) at the run's current step."""
    q = select(AccuracySample).where(
        AccuracySample.run_id == run.id, AccuracySample.step == run.steps
    )
    with db.read() as s:
        return {r.subnet_key: (r.accuracy, r.halves, r.role, r.subnet) for r in s.scalars(q)}


def judge(predictor: AccuracyPredictor, test: Sequence[Subnet], samples: dict) -> dict:
    """Held-out figures beside the supernet's own split-half noise."""
    if len(test) < 2:
        return {"held_out": {"n": len(test)}}
    y = np.asarray([samples[s.key][0] for s in test])
    halves = np.asarray([samples[s.key][1] for s in test])
    pred = predictor.predict(test)
    return {
        "held_out": {
            "n": len(test),
            "kendall": kendall(pred, y),
            "rmse": float(np.sqrt(np.mean((pred - y) ** 2))),
            "split_half_kendall": kendall(halves[:, 0], halves[:, 1]),
            "split_half_rmse": float(np.sqrt(np.mean((halves[:, 0] - halves[:, 1]) ** 2) / 2)),
        }
    }


def store(
    db: Database, run: Run, predictor: AccuracyPredictor, n_train: int, metrics: dict,
    name: str | None = None,
) -> int:  # fmt: skip
    with db.write() as s:
        row = AccuracyPredictorRow(
            run_id=run.id, step=run.steps, space_key=predictor.space.key, kind=predictor.kind,
            name=name, n_train=n_train, metrics=metrics, model=predictor.to_dict(),
        )  # fmt: skip
        s.add(row)
        s.flush()
        return row.id


def newest_id(db: Database, run: Run) -> int | None:
    """The run's newest accuracy predictor fitted by `hwnas accuracy fit` (not a search's
    refit), at any step."""
    with db.read() as s:
        return s.scalar(
            select(AccuracyPredictorRow.id)
            .where(AccuracyPredictorRow.run_id == run.id, AccuracyPredictorRow.name.is_(None))
            .order_by(AccuracyPredictorRow.id.desc())
            .limit(1)
        )


def load(db: Database, run: Run, predictor_id: int | None = None) -> Fitted:
    """The accuracy predictor of `run`: `predictor_id`, else the newest; a UserError where
    there is none, or it belongs to another run, space or training step."""
    how = f"fit one with `hwnas accuracy fit --run {run.name}`"
    pid = predictor_id if predictor_id is not None else newest_id(db, run)
    with db.read() as s:
        row = s.get(AccuracyPredictorRow, pid) if pid is not None else None
        if row is None:
            which = f"no accuracy predictor {pid}" if pid is not None else "no accuracy predictor"
            raise UserError(f"{which} for run {run.name!r}; {how}")
        space_key, run_id, step, model = row.space_key, row.run_id, row.step, row.model
        band = BAND_RMSE * float(row.metrics.get("rmse", 0.0))
    if run_id != run.id:
        raise UserError(f"accuracy predictor {pid} was fitted on another run, not {run.name!r}; "
                        f"{how}")  # fmt: skip
    if space_key != SearchSpace.from_dict(run.space).key:
        raise UserError(f"accuracy predictor {pid} was fitted on another search space; {how}")
    if step != run.steps:
        raise UserError(
            f"accuracy predictor {pid} was fitted at step {step}, run {run.name!r} is now at "
            f"step {run.steps}; {how}"
        )
    try:
        return Fitted(AccuracyPredictor.from_dict(model), pid, band)
    except AccuracyPredictorError as e:
        raise UserError(f"accuracy predictor {pid}: {e}; {how}") from None


def refit(db: Database, run: Run, name: str, like: int) -> int:
    """A predictor of the kind of predictor `like`, fitted on every stored sample of the run
    (the fit's, the held-out ones and searches' re-scored fronts), stored as `name` (reused
    where it exists: a loop resumed after the refit)."""
    with db.read() as s:
        old = s.scalar(
            select(AccuracyPredictorRow.id).where(
                AccuracyPredictorRow.run_id == run.id,
                AccuracyPredictorRow.name == name,
                AccuracyPredictorRow.step == run.steps,
            )
        )
        base = s.get(AccuracyPredictorRow, like)
        kind, rmse = base.kind, base.metrics.get("rmse", 0.0)
    if old is not None:
        return old
    space = SearchSpace.from_dict(run.space)
    samples = load_samples(db, run)
    subnets = [space.subnet_from_dict(v[3]) for v in samples.values()]
    y = np.asarray([v[0] for v in samples.values()])
    t0 = time.perf_counter()
    predictor = fit_kind(kind, space, encode(space, subnets), y)
    metrics = {"fit_seconds": time.perf_counter() - t0, "refit_of": like, "rmse": rmse}
    return store(db, run, predictor, len(subnets), metrics, name)


def rescore_front(db: Database, search_id: int, run: Run, band: float, problem) -> int:
    """Evaluate with the supernet every feasible candidate of the search within `band` of its
    front that has no supernet accuracy yet (stored on the candidate, and as a `front` sample
    for the next refit; a subnet the run already has a sample of is not evaluated again);
    then give every other trial of a re-scored subnet its figure and mark the front on
    supernet accuracies. The front here is of the supernet's accuracy where a candidate has
    it (an earlier round's re-scoring), else the predicted one. Returns how many subnets the
    supernet evaluated."""
    with db.read() as s:
        rows = list(s.execute(select(
            Candidate.id, Candidate.subnet, Candidate.accuracy, Candidate.predicted_ms,
            Candidate.params, Candidate.macs, Candidate.accuracy_supernet,
        ).where(Candidate.search_id == search_id, Candidate.feasible)).all())  # fmt: skip
    if not rows:
        return 0
    costs = [problem.values({"accuracy": 0.0, "latency_ms": r.predicted_ms, "params": r.params,
                             "macs": r.macs})[1:] for r in rows]  # fmt: skip
    told = [r.accuracy if r.accuracy_supernet is None else r.accuracy_supernet for r in rows]
    near = near_front(np.asarray(told), np.asarray(costs), band)
    todo = [r for r, n in zip(rows, near, strict=True) if n and r.accuracy_supernet is None]
    fresh = 0
    if todo:
        space = SearchSpace.from_dict(run.space)
        subnets = {r.id: space.subnet_from_dict(r.subnet) for r in todo}
        unique = list({s.key: s for s in subnets.values()}.values())
        fresh = evaluate(db, run, oracle_for(run).evaluate, unique, "front")
        samples = load_samples(db, run)  # those stored before (a resumed re-score) included
        with db.write() as s:
            for cid, subnet in subnets.items():
                s.get(Candidate, cid).accuracy_supernet = samples[subnet.key][0]
    _share_rescored(db, search_id)
    candidates.mark_pareto(db, search_id, problem, by_supernet=True)
    return fresh


def _share_rescored(db: Database, search_id: int) -> None:
    """Every trial of a subnet the search re-scored carries its supernet accuracy (a subnet
    sampled again after it was re-scored is told it too, `hwnas.search.services.rounds.told`)."""
    with db.write() as s:
        rows = list(s.scalars(select(Candidate).where(Candidate.search_id == search_id)))
        known = {r.subnet_key: r.accuracy_supernet for r in rows
                 if r.accuracy_supernet is not None}  # fmt: skip
        for r in rows:
            if r.accuracy_supernet is None and r.subnet_key in known:
                r.accuracy_supernet = known[r.subnet_key]
