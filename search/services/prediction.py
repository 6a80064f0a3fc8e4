"""Service functions for latency predictors: fit (with held-out evaluation and baselines side
by side) and predict. Measurements and predictors are read and written through
`db/latency_store.py`."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.db.latency_store import (
    add_predictor,
    latest_predictor_id,
    measured_space_keys,
    measurements,
    predictor_row,
    space_data,
    space_target_keys,
)
from hwnas.db.models import Target as TargetRow
from hwnas.db.queries import space_names, target_keys, target_row
from hwnas.db.session import Database, Session, open_db
from hwnas.exceptions import FIELD
from hwnas.latency.choice import SOURCES_BELOW, Choice, choose
from hwnas.latency.features import Encoded, SpaceTables, block_key, table_layers
from hwnas.latency.measurement_file import MeasurementFileError, encode_subnet_lines
from hwnas.latency.predictor import (
    PREDICTOR_KINDS,
    Predictor,
    PredictorError,
    fit_lut,
    fit_macs,
    fit_main,
    holdout_split,
    metrics,
)
from hwnas.latency.targets import Target
from hwnas.search.output import UserError
from hwnas.search.result import Result
from hwnas.search.services.recorded_runs import load_run_record
from hwnas.search.services.target_args import import_hint
from hwnas.supernet.space import SearchSpace, SpaceError, Subnet, load_space


@dataclass(frozen=True)
class TargetData:
    """A (space, target) pair's measurements: one median latency per distinct subnet, and per
    block."""

    space: SearchSpace
    subnets: list[Subnet]
    latency_ms: np.ndarray
    blocks: dict[str, float]


@dataclass(frozen=True)
class Scores(Result):
    """A predictor's figures on measured subnets (`hwnas.latency.predictor.metrics`): shares
    within +-5% and +-10%, MAPE (%), Kendall tau and the 95th percentile of underestimation."""

    n: int
    within5: float
    within10: float
    mape: float
    kendall: float
    under_p95: float

    @classmethod
    def of(cls, predicted: np.ndarray, measured: np.ndarray) -> Scores:
        return cls(**metrics(predicted, measured))


@dataclass(frozen=True)
class FitResult(Result):
    """The predictors of a (space, target) pair fitted and stored (`hwnas predictor fit`):
    `kind`'s held-out figures, and the other kinds' as baselines (None: not fitted). `model`:
    the main model chosen by validation (`hwnas.latency.choice`: alone, a single feature, or
    built on the `sources`, other targets of the space), with every candidate's `validation`
    error (mean relative error on the training split)."""

    target: str
    space: str
    space_key: str
    kind: str
    n_train: int
    holdout: Scores
    baselines: Mapping[str, Scores | None]
    model: str = "alone"
    sources: list[str] = field(default_factory=list)
    validation: Mapping[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Prediction(Result):
    """One subnet's predicted latency (`hwnas predict`)."""

    target: str
    kind: str
    latency_ms: float
    key: str


def measured_target(s: Session, target: Target) -> TargetRow:
    """The target's row; a UserError naming the measured ones where it has no measurements."""
    row = target_row(s, target.key)
    if row is None:
        known = target_keys(s)
        hint = f"; targets with measurements: {', '.join(known)}" if known else ""
        raise UserError(f"no measurements for target {target.key}: {how_to_measure(target)}"
                        f"{hint}")  # fmt: skip
    return row


def how_to_measure(target: Target) -> str:
    """What gives `target` measurements: `hwnas measure` where hwnas runs it, an import
    otherwise (a name that is not cpu, gpu or tflite is an imported target's)."""
    if target.measurable:
        return f"run `hwnas measure --target {target.key}` first"
    return (
        f"{target.key} is not cpu, gpu or tflite, so hwnas takes its measurements from a file: "
        f"{import_hint(target.key)}"
    )


def resolve_space(s: Session, t: TargetRow, space_key: str | None) -> str:
    """The space whose measurements of target `t` are meant: `space_key` if it has some, else
    the only space measured on `t`."""
    keys = measured_space_keys(s, t.id)
    names = space_names(s)
    label = ", ".join(f"{names.get(k, '?')} ({k})" for k in keys)
    if space_key is not None and space_key not in keys:
        have = f"; it has measurements of {label}" if keys else ""
        raise UserError(
            f"target {t.key} has no measurements of space {names.get(space_key, space_key)}; "
            f"{how_to_measure(Target.parse(t.key))}{have}"
        )
    if space_key is not None:
        return space_key
    if not keys:
        raise UserError(
            f"target {t.key} has no measurements; {how_to_measure(Target.parse(t.key))}"
        )
    if len(keys) > 1:
        raise UserError(
            f"target {t.key} has measurements of several spaces ({label}); say which with "
            f"{FIELD} NAME|FILE or the run that trained it",
            field="space",
        )
    return keys[0]


def space_for(db_url: str | None, space: str | None, run: str | None) -> SearchSpace:
    """The space a user names: a preset or file, or the one a recorded run trained (both must
    agree)."""
    named = load_space(space) if space is not None else None
    if run is None:
        if named is None:
            raise UserError("say which space the subnets are of: {field} NAME|FILE", field="space")
        return named
    with open_db(db_url, create=False) as db:
        trained = load_run_record(db, run).space
    if named is not None and named.key != trained.key:
        raise UserError(f"run {run} trained space {trained.name}, not {named.name}; give one of "
                        "them", field="space")  # fmt: skip
    return trained


def space_key_for(db_url: str | None, space: str | None, run: str | None) -> str | None:
    """The key of the space a user means by a space (a preset or file) and/or a run (None
    when neither is given); both must name the same space."""
    return None if space is None and run is None else space_for(db_url, space, run).key


def load_space_row(s: Session, key: str) -> SearchSpace:
    data = space_data(s, key)
    if data is None:
        raise UserError(f"space {key} is not recorded in this database")
    return SearchSpace.from_dict(data)


def load_target_data(db: Database, target: Target, space_key: str | None = None) -> TargetData:
    """Measurements of `target` on `space_key` (by default the only space measured on it)."""
    with db.read() as s:
        t = measured_target(s, target)
        key = resolve_space(s, t, space_key)
        space = load_space_row(s, key)
        rows = measurements(s, t.id, key)
    per_subnet: dict[str, list[float]] = defaultdict(list)
    blocks: dict[str, list[float]] = defaultdict(list)
    subnet_of = {}
    for m in rows:
        if m.kind == "block":
            blocks[m.subnet_key].append(m.median_ms)
            continue
        try:
            subnet_of[m.subnet_key] = space.subnet_from_dict(m.subnet)
        except SpaceError:
            continue
        per_subnet[m.subnet_key].append(m.median_ms)
    keys = sorted(per_subnet)
    return TargetData(
        space,
        [subnet_of[k] for k in keys],
        np.asarray([np.median(per_subnet[k]) for k in keys]),
        {k: float(np.median(v)) for k, v in blocks.items()},
    )


def lut_vector(t: SpaceTables, blocks: Mapping[str, float]) -> np.ndarray:
    """Per lookup-table column, its layer's latency measured alone (NaN where not measured)."""
    return np.asarray([blocks.get(block_key(ly), np.nan) for ly in table_layers(t)])


FLOOR = 0.8  # no prediction below 80% of the fastest training measurement (half of the
# measured subnets spread over the size range, so the fastest is near the smallest subnet)


MIN_SUBNETS = 20  # measured subnets a target needs to be fitted alone
MIN_WITH_SOURCES = 10  # ... and with other targets of the space as sources
MIN_SOURCE = 20  # measured subnets a target needs to serve as a source


def source_predictors(
    db: Database, target: Target, space_key: str, unseen: frozenset[str] = frozenset()
) -> dict[str, Predictor]:
    """The main model of every other target of the space with at least `MIN_SOURCE` measured
    subnets, fitted alone on them (so a source never carries what it learnt from another
    target), leaving out the subnets in `unseen` (the target's held-out ones: a source that
    had measured them would make the held-out score optimistic)."""
    with db.read() as s:
        keys = [k for k in space_target_keys(s, space_key) if k != target.key]
    out = {}
    for key in keys:
        data = load_target_data(db, Target.parse(key), space_key)
        keep = np.asarray([s.key not in unseen for s in data.subnets], bool)
        if keep.sum() >= MIN_SOURCE:
            t = SpaceTables(data.space)
            enc = t.encode([s for s, k in zip(data.subnets, keep, strict=True) if k])
            out[key] = fit_main(data.space, t, enc, data.latency_ms[keep],
                                lut_vector(t, data.blocks))  # fmt: skip
    return out


@dataclass(frozen=True)
class Fitted:
    predictors: dict[str, Predictor]
    scores: dict[str, Scores]
    choice: Choice


def _fit_all(
    data: TargetData, train: np.ndarray, test: np.ndarray, sources: Mapping[str, Predictor]
) -> Fitted:
    t = SpaceTables(data.space)
    enc_all = t.encode(data.subnets)
    y = data.latency_ms
    sub = enc_all.take
    lut = lut_vector(t, data.blocks)
    try:
        choice = choose(data.space, t, sub(train), y[train], lut, sources)
    except ValueError as e:
        raise PredictorError(str(e)) from None
    fitted = {"main": choice.predictor, "macs": fit_macs(data.space, t, sub(train), y[train])}
    if not np.isnan(lut).any():
        fitted["lut"] = fit_lut(data.space, t, sub(train), y[train], lut)
    floor = FLOOR * float(y[train].min())
    fitted = {k: p.with_floor(floor).with_range(t, sub(train)) for k, p in fitted.items()}
    scores = {k: Scores.of(p.predict_encoded(t, sub(test)), y[test]) for k, p in fitted.items()}
    return Fitted(fitted, scores, choice)


def _check_size(target: Target, n: int, sources: Mapping[str, Predictor]) -> None:
    least = MIN_WITH_SOURCES if sources else MIN_SUBNETS
    if n >= least:
        return
    other = (
        ""
        if sources
        else (f" (or {MIN_WITH_SOURCES} where another target of the space has {MIN_SOURCE})")
    )
    raise UserError(f"target {target.key} has {n} measured subnets; it needs at least {least}"
                    f"{other}: {how_to_measure(target)}")  # fmt: skip


def fit(
    db_url: str | None,
    target: Target,
    kind: str = "main",
    holdout: float = 0.2,
    seed: int = 0,
    space_key: str | None = None,
) -> FitResult:
    """Fit every predictor kind of the (space, target) pair on the training split, evaluate on
    the held-out split, store them; report `kind` with the others as baselines. The main
    model is chosen by validation on the training split, other targets of the space as
    sources where the target has few measurements (`hwnas.latency.choice`)."""
    if kind not in PREDICTOR_KINDS:
        raise UserError(
            f"unknown {FIELD} {kind!r}; choose one of {', '.join(PREDICTOR_KINDS)}", field="kind"
        )
    if not 0.05 <= holdout <= 0.5:
        raise UserError(f"{FIELD} must be between 0.05 and 0.5, got {holdout}", field="holdout")
    with open_db(db_url, create=False) as db:
        data = load_target_data(db, target, space_key)
        n = len(data.subnets)
        train, test = holdout_split(n, holdout, seed)
        unseen = frozenset(data.subnets[i].key for i in test)
        sources = (
            source_predictors(db, target, data.space.key, unseen) if n < SOURCES_BELOW else {}
        )
        _check_size(target, n, sources)
        try:
            f = _fit_all(data, train, test, sources)
        except PredictorError as e:
            raise UserError(str(e)) from None
        if kind not in f.predictors:
            raise UserError(
                f"{FIELD} {kind} needs every lookup-table layer measured; run `hwnas measure "
                f"--target {target.key} --blocks`",
                field="kind",
            )
        _store(db, target, data.space.key, f, len(train))
    baselines: dict[str, Scores | None] = {k: v for k, v in f.scores.items() if k != kind}
    if "lut" not in f.predictors:
        baselines["lut"] = None
    used = sorted(sources) if "source" in f.choice.model else []
    if f.choice.model.startswith("source:"):
        used = [f.choice.model.removeprefix("source:")]
    validation = {k: (v if np.isfinite(v) else None) for k, v in f.choice.errors.items()}
    return FitResult(target.key, data.space.name, data.space.key, kind, len(train),
                     f.scores[kind], baselines, f.choice.model, used, validation)  # fmt: skip


def _store(db: Database, target: Target, space_key: str, f: Fitted, n_train: int) -> None:
    with db.write() as s:
        t = measured_target(s, target)
        for k, p in f.predictors.items():
            scores = f.scores[k].to_json() | ({"model": f.choice.model} if k == "main" else {})
            add_predictor(s, t.id, space_key, k, n_train, scores, p.to_dict())


def refit_main(
    db: Database,
    target: Target,
    space_key: str,
    name: str,
    focus: set[str],
    holdout: float = 0.2,
    seed: int = 0,
) -> int:
    """Refit `target`'s main predictor on every measured subnet, the subnets in `focus` (the
    ones a search measured on its fronts) together weighing as much as the rest, up to 10x
    each: the fit then follows the region the search works in. The model is chosen by
    weighted validation as `fit` chooses it (`hwnas.latency.choice`), then corrected
    locally by its residuals. Stored as `name`; its metrics are those of the same fit on a
    training split, scored on the held-out rest. Returns the new row's id."""
    data = load_target_data(db, target, space_key)
    t = SpaceTables(data.space)
    enc, y = t.encode(data.subnets), data.latency_ms
    hot = np.asarray([s.key in focus for s in data.subnets])
    weight = np.where(hot, np.clip((~hot).sum() / max(hot.sum(), 1), 1.0, FOCUS_MAX), 1.0)
    lut = lut_vector(t, data.blocks)
    train, test = holdout_split(len(y), holdout, seed)
    few = len(y) < SOURCES_BELOW
    unseen = frozenset(data.subnets[i].key for i in test)
    part_sources = source_predictors(db, target, space_key, unseen) if few else {}
    sources = source_predictors(db, target, space_key) if few else {}
    try:
        part = _fit_weighted(data, t, enc.take(train), y[train], lut, weight[train], part_sources)
        whole = _fit_weighted(data, t, enc, y, lut, weight, sources)
    except PredictorError as e:
        raise UserError(str(e)) from None
    scores = Scores.of(part.predict_encoded(t, enc.take(test)), y[test])
    with db.write() as s:
        target_id = measured_target(s, target).id
        return add_predictor(s, target_id, space_key, "main", len(y), scores.to_json(),
                             whole.to_dict(), name=name)  # fmt: skip


FOCUS_MAX = 10.0


def _fit_weighted(
    data: TargetData,
    t: SpaceTables,
    enc: Encoded,
    y: np.ndarray,
    lut: np.ndarray,
    weight: np.ndarray,
    sources: Mapping[str, Predictor],
) -> Predictor:
    try:
        p = choose(data.space, t, enc, y, lut, sources, weight).predictor
    except ValueError as e:
        raise PredictorError(str(e)) from None
    return p.with_floor(FLOOR * float(y.min())).with_range(t, enc).with_residual(t, enc, y)


def load_predictor_by_id(db: Database, predictor_id: int) -> tuple[Predictor, dict[str, Any]]:
    """A stored predictor by its row id, and its held-out metrics as stored (the keys of
    `Scores`; rows fitted before a figure was kept lack it)."""
    with db.read() as s:
        row = predictor_row(s, predictor_id)
        if row is None:
            raise UserError(f"predictor {predictor_id} is not in this database")
        model, scores = row.model, dict(row.metrics)
    try:
        return Predictor.from_dict(model), scores
    except PredictorError as e:
        raise UserError(str(e)) from None


def newest_predictor_id(
    db: Database, target: Target, kind: str = "main", space_key: str | None = None
) -> int | None:
    """The target's own newest predictor of `kind` (fitted by `hwnas predictor fit`) for the
    space `space_key` (None: of any space); the ones a search refits between its rounds
    (named `SEARCH/rN`, weighted towards that search's fronts) serve that search only."""
    with db.read() as s:
        return latest_predictor_id(s, measured_target(s, target).id, kind, space_key)


def load_predictor(
    db: Database, target: Target, kind: str = "main", space_key: str | None = None
) -> Predictor:
    return load_predictor_row(db, target, kind, space_key)[0]


def load_predictor_row(
    db: Database, target: Target, kind: str = "main", space_key: str | None = None
) -> tuple[Predictor, dict[str, Any]]:
    """The target's own newest predictor of `kind` for `space_key` (`newest_predictor_id`),
    and its held-out metrics."""
    pid = newest_predictor_id(db, target, kind, space_key)
    if pid is None:
        of = " of this space" if space_key else ""
        raise UserError(
            f"no {kind} predictor for target {target.key}{of}; run `hwnas predictor fit "
            f"--target {target.key}`"
        )
    return load_predictor_by_id(db, pid)


def predict(
    db_url: str | None,
    target: Target,
    subnet_json: str,
    kind: str = "main",
    space_key: str | None = None,
) -> Prediction:
    """One subnet's latency on `target`, by its newest `kind` predictor for the space."""
    with open_db(db_url, create=False) as db:
        predictor = load_predictor(db, target, kind, space_key)
    subnet = predictor.space.subnet_from_json(subnet_json)
    ms = float(predictor.predict([subnet])[0])
    return Prediction(target.key, kind, ms, subnet.key)


def predict_subnets(
    db_url: str | None,
    target: Target,
    subnets: Sequence[Mapping[str, Any]],
    kind: str = "main",
    space_key: str | None = None,
) -> np.ndarray:
    """The latency of each subnet (as JSON objects), in order, by the target's newest `kind`
    predictor for the space; a subnet not of the space raises naming its index."""
    with open_db(db_url, create=False) as db:
        predictor = load_predictor(db, target, kind, space_key)
    checked = []
    for i, d in enumerate(subnets):
        try:
            checked.append(predictor.space.subnet_from_dict(d))
        except SpaceError as e:
            raise UserError(f"subnet {i}: {e}", field="subnets") from None
    return predictor.predict(checked)


def predict_file(
    db_url: str | None,
    target: Target,
    path: str | Path,
    kind: str = "main",
    space_key: str | None = None,
) -> np.ndarray:
    """The latency of every subnet of a file of subnet lines (`hwnas predict --subnets`), in
    its order, by the target's newest `kind` predictor for the space (all lines checked
    first: the first bad one is named)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such file {path}", field="subnets")
    with open_db(db_url, create=False) as db:
        predictor = load_predictor(db, target, kind, space_key)
    tables = SpaceTables(predictor.space)
    try:
        enc = encode_subnet_lines(path, predictor.space, tables)
    except MeasurementFileError as e:
        raise UserError(f"{e}; nothing was predicted") from None
    return predictor.predict_encoded(tables, enc)
