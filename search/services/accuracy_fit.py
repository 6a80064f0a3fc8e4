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

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from hwnas.db import search_store as store
from hwnas.db.models import AccuracyPredictor as AccuracyPredictorRow
from hwnas.db.models import AccuracySample, Run
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
from hwnas.search.objective import Problem
from hwnas.search.output import UserError
from hwnas.search.pareto import near_front
from hwnas.search.result import Result
from hwnas.search.search_config import ACCURACY_MODES as MODES
from hwnas.search.services.recorded_runs import load_run, oracle_for, run_dataset
from hwnas.supernet.space import SearchSpace, Subnet
from hwnas.supernet.train_config import TrainConfig

logger = logging.getLogger(__name__)

__all__ = ["MODES", "AccuracyChoice", "AccuracyFitResult", "auto_rule", "choose", "fit"]

# `--accuracy auto`, decided before anything runs. A supernet evaluation recalibrates
# BatchNorm on the calibration images and runs the validation split through the subnet: its
# work is those images times the largest subnet's MACs. The demo run (digits, 270 validation
# and 256 calibration images, 7.3 MMAC: 3.8 GMAC) took 0.08 s a subnet on this project's
# 2-core machine (docs/results.md, 2026-12-04), about 50 GMAC/s; the rule it replaces took the
# predictor above 0.5 s a subnet, i.e. about 25 GMAC. `cifar` on CIFAR-10 (9,256 images, 63
# MMAC) is 590 GMAC, `ofa-mbv3` at 224 px 5 TMAC: both go to the predictor.
AUTO_GMAC = 25.0
# ... and only a predictor that ranks held-out subnets about as well as the validation split
# can check them: the demo run's held-out tau 0.711 against the supernet's split-half 0.663.
AUTO_MIN_TAU = 0.6
HELD_OUT_SEED = 10_000  # the held-out sample's seed is the fit's seed plus this
BAND_RMSE = 1.0  # candidates this many predictor RMSEs of accuracy behind the front re-scored


@dataclass(frozen=True)
class Fitted:
    """A stored accuracy predictor: the model, its row id, and the accuracy band around a
    front it drove that is re-scored with the supernet."""

    predictor: AccuracyPredictor
    id: int
    band: float
    held_out_tau: float | None = None  # Kendall tau on its held-out subnets (`hwnas accuracy fit`)


@dataclass(frozen=True)
class HeldOut(Result):
    """A predictor judged on held-out subnets beside the supernet's split-half noise (the
    figures are left out with fewer than two subnets)."""

    n: int
    kendall: float | None = None
    rmse: float | None = None
    split_half_kendall: float | None = None
    split_half_rmse: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in super().to_json().items() if v is not None}


@dataclass(frozen=True)
class AccuracyFitResult(Result):
    """`hwnas accuracy fit`: the stored predictor, how it was fitted and judged."""

    run: str
    predictor: int
    kind: str
    n_train: int
    evaluated: int  # subnets the supernet evaluated now (the rest were stored)
    eval_seconds_per_subnet: float | None
    cv: Mapping[str, Mapping[str, float]]  # kind -> its cross-validated figures
    rmse: float
    fit_seconds: float
    held_out: HeldOut

    def metrics(self) -> dict[str, Any]:
        """What is stored with the predictor's row."""
        keep = ("cv", "rmse", "fit_seconds", "held_out")
        return {k: v for k, v in self.to_json().items() if k in keep}


def fit(
    db_url: str | None, run_name: str, n: int = 400, held_out: int = 100, seed: int = 0,
    progress: bool = True,
) -> AccuracyFitResult:  # fmt: skip
    """Evaluate (or reuse) `n` training and `held_out` held-out subnets with the supernet,
    fit the best predictor by cross-validation, judge it on the held-out ones, store it."""
    if n < 10 or held_out < 0:
        raise UserError(f"{{field}} must be at least 10 and --held-out at least 0, got {n}, "
                        f"{held_out}", field="n")  # fmt: skip
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
        y = np.asarray([samples[s.key].accuracy for s in train])
        t0 = time.perf_counter()
        predictor, cv = fit_best(space, encode(space, train), y, seed)
        fit_s = time.perf_counter() - t0
        result = AccuracyFitResult(
            run_name, 0, predictor.kind, len(train), fresh,
            eval_s / fresh if fresh else None, cv, cv[predictor.kind]["rmse"], fit_s,
            judge(predictor, test, samples),
        )  # fmt: skip
        pid = save(db, run, predictor, len(train), result.metrics())
    return dataclasses.replace(result, predictor=pid)


@dataclass(frozen=True)
class AccuracyChoice(Result):
    """What scores a search's trials, and why (`--accuracy auto` says why it chose)."""

    mode: str  # supernet or predictor
    why: str
    predictor: int | None = None  # the accuracy predictor's row id (mode predictor)


def choose(db: Database, run: Run, mode: str, predictor_id: int | None) -> AccuracyChoice:
    """What scores the trials: the supernet, the accuracy predictor (`predictor_id`, else the
    run's newest), or for `auto` the rule `auto_rule` over what is known before running."""
    if mode == "supernet":
        return AccuracyChoice("supernet", "asked for (--accuracy supernet)")
    if mode == "predictor":
        pid = load(db, run, predictor_id).id
        return AccuracyChoice("predictor", "asked for (--accuracy predictor)", pid)
    try:
        fitted = load(db, run, predictor_id)
    except UserError:
        fitted = None
    tau = fitted.held_out_tau if fitted is not None else None
    gmac = _evaluation_gmac(run) if fitted is not None and (tau or 0) >= AUTO_MIN_TAU else None
    use, why = auto_rule(fitted is not None, tau, gmac)
    choice = AccuracyChoice("predictor" if use else "supernet", why,
                            fitted.id if use and fitted is not None else None)  # fmt: skip
    logger.info(f"accuracy: auto chose the {choice.mode}: {why}")
    return choice


def auto_rule(has_predictor: bool, tau: float | None, gmac: float | None) -> tuple[bool, str]:
    """Whether `auto` takes the accuracy predictor, and why: the run has one, it ranks its
    held-out subnets with Kendall tau >= `AUTO_MIN_TAU`, and one supernet evaluation is
    `gmac` >= `AUTO_GMAC` giga-MACs (its images times the largest subnet's MACs)."""
    if not has_predictor:
        return False, "the run has no accuracy predictor (`hwnas accuracy fit`)"
    if tau is None or tau < AUTO_MIN_TAU:
        shown = "unknown" if tau is None else f"{tau:.3f}"
        why = f"the accuracy predictor's held-out Kendall tau ({shown}) is under {AUTO_MIN_TAU}"
        return False, why
    if gmac is None or gmac < AUTO_GMAC:
        return False, f"a supernet evaluation is {gmac or 0:.3g} GMAC, under {AUTO_GMAC:g}"
    why = f"a supernet evaluation is {gmac:.3g} GMAC (>= {AUTO_GMAC:g}) and the predictor's "
    return True, why + f"held-out Kendall tau is {tau:.3f} (>= {AUTO_MIN_TAU})"


def _evaluation_gmac(run: Run) -> float:
    """One supernet evaluation's work: validation and calibration images through the
    largest subnet, in giga-MACs (the validation split is read, nothing is compiled)."""
    space = SearchSpace.from_dict(run.space)
    config = TrainConfig.from_dict(run.config)
    images = len(run_dataset(run).y_val) + config.recalib_batches * config.batch_size
    return images * space.cost(space.largest()).macs / 1e9


def spread(
    space: SearchSpace, n: int, seed: int, exclude: set[str] | frozenset[str] = frozenset()
) -> list[Subnet]:
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
        store.add_accuracy_sample(db, AccuracySample(
            run_id=run.id, step=run.steps, subnet_key=subnet.key, subnet=subnet.to_dict(),
            accuracy=acc, halves=[even, odd], role=role))  # fmt: skip
    return len(todo)


@dataclass(frozen=True)
class Sample:
    """A subnet's supernet accuracy stored for the run's current weights."""

    accuracy: float
    halves: tuple[float, float]  # on the validation split's even and odd images
    role: str  # train, held-out or front
    subnet: Mapping[str, Any]


def load_samples(db: Database, run: Run) -> dict[str, Sample]:
    """subnet key -> its sample at the run's current step."""
    rows = store.accuracy_samples(db, run.id, run.steps)
    return {r.subnet_key: Sample(r.accuracy, (r.halves[0], r.halves[1]), r.role, r.subnet)
            for r in rows}  # fmt: skip


def judge(
    predictor: AccuracyPredictor, test: Sequence[Subnet], samples: Mapping[str, Sample]
) -> HeldOut:
    """Held-out figures beside the supernet's own split-half noise."""
    if len(test) < 2:
        return HeldOut(len(test))
    y = np.asarray([samples[s.key].accuracy for s in test])
    halves = np.asarray([samples[s.key].halves for s in test])
    pred = predictor.predict(test)
    return HeldOut(
        n=len(test),
        kendall=kendall(pred, y),
        rmse=float(np.sqrt(np.mean((pred - y) ** 2))),
        split_half_kendall=kendall(halves[:, 0], halves[:, 1]),
        split_half_rmse=float(np.sqrt(np.mean((halves[:, 0] - halves[:, 1]) ** 2) / 2)),
    )


def save(
    db: Database, run: Run, predictor: AccuracyPredictor, n_train: int,
    metrics: Mapping[str, Any], name: str | None = None,
) -> int:  # fmt: skip
    return store.add_accuracy_predictor(db, AccuracyPredictorRow(
        run_id=run.id, step=run.steps, space_key=predictor.space.key, kind=predictor.kind,
        name=name, n_train=n_train, metrics=dict(metrics), model=predictor.to_dict(),
    ))  # fmt: skip


def newest_id(db: Database, run: Run) -> int | None:
    """The run's newest accuracy predictor fitted by `hwnas accuracy fit` (not a search's
    refit), at any step."""
    return store.newest_accuracy_predictor(db, run.id)


def load(db: Database, run: Run, predictor_id: int | None = None) -> Fitted:
    """The accuracy predictor of `run`: `predictor_id`, else the newest; a UserError where
    there is none, or it belongs to another run, space or training step."""
    how = f"fit one with `hwnas accuracy fit --run {run.name}`"
    pid = predictor_id if predictor_id is not None else newest_id(db, run)
    row = store.accuracy_predictor(db, pid) if pid is not None else None
    if row is None:
        which = f"no accuracy predictor {pid}" if pid is not None else "no accuracy predictor"
        raise UserError(f"{which} for run {run.name!r}; {how}")
    space_key, run_id, step, model = row.space_key, row.run_id, row.step, row.model
    band = BAND_RMSE * float(row.metrics.get("rmse", 0.0))
    tau = row.metrics.get("held_out", {}).get("kendall")
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
        return Fitted(AccuracyPredictor.from_dict(model), row.id, band, tau)
    except AccuracyPredictorError as e:
        raise UserError(f"accuracy predictor {pid}: {e}; {how}") from None


def refit(db: Database, run: Run, name: str, like: int) -> int:
    """A predictor of the kind of predictor `like`, fitted on every stored sample of the run
    (the fit's, the held-out ones and searches' re-scored fronts), stored as `name` (reused
    where it exists: a loop resumed after the refit)."""
    old = store.named_accuracy_predictor(db, run.id, run.steps, name)
    if old is not None:
        return old
    base = store.accuracy_predictor(db, like)
    assert base is not None, like
    kind, rmse = base.kind, base.metrics.get("rmse", 0.0)
    space = SearchSpace.from_dict(run.space)
    samples = load_samples(db, run)
    subnets = [space.subnet_from_dict(v.subnet) for v in samples.values()]
    y = np.asarray([v.accuracy for v in samples.values()])
    t0 = time.perf_counter()
    predictor = fit_kind(kind, space, encode(space, subnets), y)
    metrics = {"fit_seconds": time.perf_counter() - t0, "refit_of": like, "rmse": rmse}
    return save(db, run, predictor, len(subnets), metrics, name)


def rescore_front(db: Database, search_id: int, run: Run, band: float, problem: Problem) -> int:
    """Evaluate with the supernet every feasible candidate of the search within `band` of its
    front that has no supernet accuracy yet (stored on the candidate, and as a `front` sample
    for the next refit; a subnet the run already has a sample of is not evaluated again);
    then give every other trial of a re-scored subnet its figure and mark the front on
    supernet accuracies. The front here is of the supernet's accuracy where a candidate has
    it (an earlier round's re-scoring), else the predicted one. Returns how many subnets the
    supernet evaluated."""
    rows = store.feasible_candidates(db, search_id)
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
        store.set_accuracy_supernet(
            db, {cid: samples[subnet.key].accuracy for cid, subnet in subnets.items()}
        )
    _share_rescored(db, search_id)
    candidates.mark_pareto(db, search_id, problem, by_supernet=True)
    return fresh


def _share_rescored(db: Database, search_id: int) -> None:
    """Every trial of a subnet the search re-scored carries its supernet accuracy (a subnet
    sampled again after it was re-scored is told it too, `hwnas.search.services.rounds.told`)."""
    with db.write() as s:
        rows = store.candidates(s, search_id)
        known = {r.subnet_key: r.accuracy_supernet for r in rows
                 if r.accuracy_supernet is not None}  # fmt: skip
        for r in rows:
            if r.accuracy_supernet is None and r.subnet_key in known:
                r.accuracy_supernet = known[r.subnet_key]
