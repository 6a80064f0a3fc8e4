"""Service functions for latency: measure subnets (here or through a job file), import worker
results.

Inputs are validated before anything is written; measurements are recorded through
`db/latency_store.py`, and the work itself runs in `latency/`. Each function returns a frozen
`Result` whose `to_json()` is the command's JSON object.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from hwnas.db.latency_store import NewMeasurement, add_measurement, run_spaces, stored_sources
from hwnas.db.queries import ensure_space, ensure_target, space_names
from hwnas.db.session import Database, Session, open_db
from hwnas.exceptions import FIELD
from hwnas.extras import require
from hwnas.latency import metrics
from hwnas.latency.drift import N_REFS, NOISE_JOBS, RUN_ANCHORS
from hwnas.latency.jobs import RESULT_FORMAT, Job, JobFileError, parse_result, read_lines
from hwnas.latency.jobs import Result as JobResult
from hwnas.latency.protocol import Protocol
from hwnas.latency.targets import Target
from hwnas.latency.worker import measure_jobs
from hwnas.search.output import UserError
from hwnas.search.result import Result
from hwnas.search.services.anchors import anchors
from hwnas.search.services.model_source import RunContext, SpaceContext
from hwnas.search.services.recorded_runs import load_run_record
from hwnas.search.services.target_args import import_hint
from hwnas.supernet.compile_cache import enable_compile_cache
from hwnas.supernet.space import SearchSpace, Subnet

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Agreement(Result):
    """How a second measurement of the same models agrees with the first
    (`hwnas.latency.metrics.agreement`)."""

    n: int
    within5: float
    within10: float
    median_rel_diff: float
    kendall: float


@dataclass(frozen=True)
class NoiseFloor(Agreement):
    """The agreement of two measurements drift-corrected (the fields), and `raw`."""

    raw: Agreement


@dataclass(frozen=True)
class MeasureResult(Result):
    """Subnets (and blocks) measured here and recorded (`hwnas measure`)."""

    target: str
    measured: int
    stored: int
    median_cv: float | None
    median_ms: float
    median_reps: float
    noise: NoiseFloor | None = None
    space: str = ""
    space_key: str = ""
    weights: str = ""


@dataclass(frozen=True)
class JobsResult(Result):
    """A job file written for `python -m hwnas.latency.worker` (`hwnas measure --jobs-out`)."""

    target: str
    jobs: int
    path: str


@dataclass(frozen=True)
class ImportResult(Result):
    """A worker's results file imported (`hwnas measure --import`)."""

    imported: int
    skipped: int
    path: str


def protocol_for(passes: int, max_reps: int) -> Protocol:
    """The default protocol with a user's `passes` and `max_reps`, checked (HwnasError)."""
    return Protocol.limited(passes, max_reps)


def sample_subnets(space: SearchSpace, n: int, seed: int, spread: float = 0.0) -> list[Subnet]:
    """`n` distinct random subnets (the same for the same seed): a share `spread` of them with
    sizes spread evenly over the whole range (`SearchSpace.sample_sized`), the rest uniform."""
    if n < 1:
        raise UserError(f"{FIELD} must be at least 1, got {n}", field="n")
    rng, seen = np.random.default_rng((seed, 31)), set()
    out: list[Subnet] = []
    n_sized = round(spread * n)
    for _ in range(50 * n):
        s = space.sample_sized(rng) if len(out) < n_sized else space.sample(rng)
        if s.key not in seen:
            seen.add(s.key)
            out.append(s)
        if len(out) == n:
            break
    return out


SPREAD = 0.5  # share of measured subnets spread over the size range (the rest uniform)


Source = RunContext | SpaceContext


def check_measurable(target: Target) -> None:
    """An imported target is learnt from measurements taken elsewhere, never measured here."""
    if not target.measurable:
        raise UserError(
            f"target {target.key} is not one hwnas runs (cpu, gpu, tflite); import its "
            f"measurements with {import_hint(target.key)}",
            field="target",
        )


def _check_local(target: Target) -> None:
    if target.kind == "tflite":
        require("export", "the tflite target")
    if target.kind == "gpu":
        from hwnas.latency.runners import gpu_name

        if gpu_name() is None:
            raise UserError(
                "target gpu: this machine has no CUDA device visible to JAX; write a job file "
                f"with {FIELD} and run `python -m hwnas.latency.worker` on a GPU machine",
                field="jobs_out",
            )


def anchor_jobs(
    ctx: Source, target: Target, refs: Sequence[Subnet], stored: Sequence[float], model_dir: Path
) -> tuple[list[Job] | None, dict[str, float] | None]:
    """The anchors' jobs (`search/services/anchors.py`) and the drift baseline `measure_jobs`
    takes: their stored medians by job id. None of either without anchors."""
    if not refs:
        return None, None
    jobs = build_jobs_for(ctx, target, refs, False, model_dir)
    return jobs, {j.id: ms for j, ms in zip(jobs, stored, strict=True)}


def build_jobs_for(
    ctx: Source, target: Target, subnets: Sequence[Subnet], blocks: bool, model_dir: Path
) -> list[Job]:
    """A job per subnet (and with `blocks` per distinct lookup-table layer), models in
    `model_dir`."""
    from hwnas.latency.features import SpaceTables, table_layers
    from hwnas.latency.prepare import JobBuilder, block_key

    builder = JobBuilder(ctx.space, ctx.variables, target, model_dir, ctx.representative,
                         ctx.name, ctx.weights)  # fmt: skip
    layers = []
    if blocks:
        unique = {block_key(ly): ly for ly in table_layers(SpaceTables(ctx.space))}
        layers = list(unique.values())
    jobs = []
    with tqdm(total=len(subnets) + len(layers), desc="preparing", unit="model") as bar:
        for s in subnets:
            jobs.append(builder.subnet_job(s))
            bar.update()
        for ly in layers:
            jobs.append(builder.block_job(ly))
            bar.update()
    return jobs


def measure(
    db_url: str | None,
    run_name: str | None,
    target: Target,
    n: int = 50,
    seed: int = 0,
    jobs_out: str | Path | None = None,
    blocks: bool = False,
    protocol: Protocol = Protocol(),
    noise: bool = True,
    space: SearchSpace | None = None,
) -> MeasureResult | JobsResult:
    """Measure `n` random subnets (and with `blocks` every lookup-table layer) on `target`
    here and record them; with `jobs_out`, write a job file for a worker instead. With
    `noise`, the last subnets are measured again and their agreement reported. The models
    carry the run's trained weights, or with `space` and no run, initialised ones."""
    _check_inputs(run_name, space, n, target, jobs_out, protocol, noise)
    with open_db(db_url, create=run_name is None) as db:
        ctx = source(db, run_name, space)
        subnets = sample_subnets(ctx.space, n, seed, spread=SPREAD)
        if jobs_out is not None:
            return _write_jobs(db, ctx, target, subnets, blocks, Path(jobs_out))
        enable_compile_cache()
        refs, medians = anchors(db, ctx.space, target, subnets, RUN_ANCHORS)
        with tempfile.TemporaryDirectory(prefix="hwnas-measure-") as tmp:
            model_dir = Path(tmp) / "models"
            model_dir.mkdir()
            jobs = build_jobs_for(ctx, target, subnets, blocks, model_dir)
            ref_jobs, baseline = anchor_jobs(ctx, target, refs, medians, model_dir)
            results = _measure_local(jobs, Path(tmp), protocol, ref_jobs, baseline)
            floor = _own_noise_floor(jobs, results, Path(tmp), protocol) if noise else None
        stored = record_results(db, results, {ctx.space.key: ctx.space})
    return summary(target, results, stored, floor, ctx)


def _check_inputs(
    run_name: str | None,
    space: SearchSpace | None,
    n: int,
    target: Target,
    jobs_out: str | Path | None,
    protocol: Protocol,
    noise: bool,
) -> None:
    """`measure`'s inputs checked before the database is opened (or made)."""
    if run_name is None and space is None:
        raise UserError(
            f"give {FIELD} (a trained run) or space (a space, untrained): the subnets to measure",
            field="run",
        )
    if n < 1:
        raise UserError(f"{FIELD} must be at least 1, got {n}", field="n")
    check_measurable(target)
    if jobs_out is not None:
        _check_job_file_options(protocol, noise)
        _check_jobs_out(Path(jobs_out))
    else:
        _check_local(target)


def source(db: Database, run_name: str | None, space: SearchSpace | None) -> Source:
    """The models to measure: the run's (checked against `space` if both are given), or the
    space's with initialised weights."""
    if run_name is None:
        if space is None:
            raise ValueError("no run and no space to measure")  # `measure` said so first
        logger.info(
            f"measuring space {space.name} with initialised weights (no trained run needed)"
        )
        return SpaceContext(space)
    run = load_run_record(db, run_name)
    trained = run.space
    if space is not None and space.key != trained.key:
        raise UserError(
            f"run {run_name} trained space {trained.name}, not {space.name}; give the run or "
            "the space, not both",
            field="space",
        )
    return RunContext(run.row)


def _check_jobs_out(path: Path) -> None:
    if path.exists():
        raise UserError(f"{path} exists; choose another {FIELD} file", field="jobs_out")
    if not path.parent.is_dir():
        raise UserError(f"folder {path.parent} does not exist", field="jobs_out")


def _check_job_file_options(protocol: Protocol, noise: bool) -> None:
    """A job file is measured by the worker, under the worker's own options (the CLI says
    so in its own words first)."""
    if protocol != Protocol():
        raise UserError(
            f"{FIELD} applies to measuring here; a job file is measured under the options of "
            "`python -m hwnas.latency.worker`",
            field="protocol",
        )
    if not noise:
        raise UserError(
            f"{FIELD}=False applies to measuring here; leave it on with a job file", field="noise"
        )


def _measure_local(
    jobs: list[Job],
    base: Path,
    protocol: Protocol,
    refs: list[Job] | None,
    baseline: dict[str, float] | None,
) -> list[JobResult]:
    """Measure `jobs`; beside `refs` (anchors: subnets measured before, with their stored
    medians as `baseline`) where the target has data, so that the results join it in its
    unit."""
    passes = protocol.passes
    with tqdm(total=passes * len(jobs), desc=f"measuring ({passes} passes)", unit="model") as bar:

        def done(k: int, total: int) -> None:
            bar.update(k - bar.n)

        results = measure_jobs(jobs, base, protocol, on_done=done, refs=refs, baseline=baseline)
    if refs:
        drift = float(np.median([r.stats.get("drift", 1.0) for r in results]))
        logger.info(f"measured beside {len(refs)} subnets measured before on this target: "
                    f"calls took {drift:.2f}x as long as then; divided out")  # fmt: skip
    return results


def _own_noise_floor(
    jobs: list[Job], results: list[JobResult], base: Path, protocol: Protocol
) -> NoiseFloor:
    """The last subnets measured again, the first as references: apart where n allows."""
    sub = [j for j in jobs if j.kind == "subnet"]
    return noise_floor(sub[-NOISE_JOBS:], sub[:N_REFS], results, base, protocol)


def noise_floor(
    again: Sequence[Job],
    refs: Sequence[Job],
    results: list[JobResult],
    base: Path,
    protocol: Protocol = Protocol(),
) -> NoiseFloor:
    """Measure the `again` jobs a second time, after all the others, and say how often the two
    measurements of a subnet agree within 5% and 10% and how well they rank alike (Kendall
    tau, the ceiling of any predictor's): drift-corrected (the `refs` measured again give the
    machine's drift since their first measurement), and raw (`raw`)."""
    first = {r.job: r.stats for r in results}
    baseline = {j.id: first[j.id]["median_ms"] for j in refs}
    second = measure_jobs(again, base, protocol, seed=1, refs=refs, baseline=baseline)
    return remeasure_agreement([first[r.job] for r in second], [r.stats for r in second])


def remeasure_agreement(
    first: Sequence[Mapping[str, float]], second: Sequence[Mapping[str, float]]
) -> NoiseFloor:
    """Agreement of two measurements (stats) of the same models: drift-corrected, and raw."""
    a = np.asarray([st["median_ms"] for st in first])
    b = np.asarray([st["median_ms"] for st in second])
    a_raw = a * np.asarray([st.get("drift", 1.0) for st in first])
    b_raw = b * np.asarray([st.get("drift", 1.0) for st in second])
    return NoiseFloor(**agreement(a, b).to_json(), raw=agreement(a_raw, b_raw))


def agreement(first: np.ndarray, second: np.ndarray) -> Agreement:
    """How a second measurement agrees with the first (`hwnas.latency.metrics.agreement`)."""
    return Agreement(**metrics.agreement(second, first))


def _write_jobs(
    db: Database, ctx: Source, target: Target, subnets: list[Subnet], blocks: bool, path: Path
) -> JobsResult:
    with db.write() as s:  # the results name the space by its key: the import finds it here
        ensure_space(s, ctx.space.key, ctx.space.name, ctx.space.to_dict())
    model_dir = path.with_name(path.stem + ".models")
    model_dir.mkdir(exist_ok=True)
    jobs = build_jobs_for(ctx, target, subnets, blocks, model_dir)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(j.to_json() + "\n" for j in jobs), encoding="utf-8")
    tmp.replace(path)
    logger.info(
        f"wrote {len(jobs)} jobs to {path}; run: "
        f"python -m hwnas.latency.worker {path} RESULTS.jsonl"
    )
    return JobsResult(target.key, len(jobs), str(path))


def summary(
    target: Target,
    results: list[JobResult],
    stored: int,
    noise: NoiseFloor | None = None,
    ctx: Source | None = None,
) -> MeasureResult:
    """What a measurement here reports: medians over the results, and where they came from."""
    cvs = [r.stats["cv"] for r in results if r.kind == "subnet"]
    return MeasureResult(
        target=target.key,
        measured=len(results),
        stored=stored,
        median_cv=float(np.median(cvs)) if cvs else None,
        median_ms=float(np.median([r.stats["median_ms"] for r in results])),
        median_reps=float(np.median([r.stats["n_reps"] for r in results])),
        noise=noise,
        space=ctx.space.name if ctx else "",
        space_key=ctx.space.key if ctx else "",
        weights=ctx.weights if ctx else "",
    )


RunSpaces = dict[str, tuple[int, SearchSpace]]  # run name -> (row id, its space)


def record_results(
    db: Database, results: list[JobResult], spaces: Mapping[str, SearchSpace] | None = None
) -> int:
    """Insert results not yet stored (a result's source is its job id); returns how many.
    Each is recorded under its space: the one it names (known here, or in `spaces`), or for
    results written before spaces were named, its run's."""
    sources = [f"job:{r.job}"[:64] for r in results]
    with db.write() as s:
        runs = {r.name: (r.id, SearchSpace.from_dict(r.space)) for r in run_spaces(s)}
        have = stored_sources(s, sources)
        known = set(space_names(s))
        added = 0
        for r, src in zip(results, sources, strict=True):
            if src in have:
                continue
            have.add(src)
            key = _space_key(s, r, runs, known, spaces or {})
            t = ensure_target(s, r.target.key, r.target.kind, r.target.settings(), r.fingerprint)
            run_id = runs[r.run][0] if r.run in runs else None
            add_measurement(s, t.id, _new_measurement(r, run_id, key, src))
            added += 1
    return added


def _new_measurement(r: JobResult, run_id: int | None, space_key: str, src: str) -> NewMeasurement:
    st = r.stats
    return NewMeasurement(
        run_id=run_id,
        space_key=space_key,
        subnet_key=r.subnet_key,
        subnet=r.subnet,
        kind=r.kind,
        weights=r.weights,
        median_ms=float(st["median_ms"]),
        cv=float(st["cv"]),
        iqr_ms=float(st["iqr_ms"]),
        n_reps=int(st["n_reps"]),
        remeasured=bool(st.get("remeasured", False)),
        fingerprint=r.fingerprint,
        source=src,
    )


def _space_key(
    s: Session, r: JobResult, runs: RunSpaces, known: set[str], spaces: Mapping[str, SearchSpace]
) -> str:
    """The key of the space `r` was measured on, recorded in the database if it is not yet."""
    key = r.space or (runs[r.run][1].key if r.run in runs else "")
    if key in known:
        return key
    space = spaces.get(key) or next((sp for _, sp in runs.values() if sp.key == key), None)
    if space is None:
        what = f"space {key}" if key else f"run {r.run!r}"
        raise UserError(
            f"result of job {r.job} is of {what}, which this database does not hold; import it "
            "into the database its jobs were written from. Nothing was imported"
        )
    ensure_space(s, key, space.name, space.to_dict())
    known.add(key)
    return key


def is_results_file(path: str | Path) -> bool:
    """Whether `path` is a worker's results file (its lines name their format), as opposed to
    a measurement file (`hwnas.latency.measurement_file`)."""
    try:
        with open(path, encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), "")
    except (OSError, UnicodeDecodeError):
        return False  # the import says what is wrong with it
    return '"format"' in first and RESULT_FORMAT in first


def import_results(db_url: str | None, path: str | Path) -> ImportResult:
    """Import a worker's results file: all lines or none; lines already imported are skipped."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such file {path}", field="import")
    try:
        results = read_lines(path, parse_result)
    except JobFileError as e:
        raise UserError(f"{e}; nothing was imported") from None
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a UTF-8 text results file; nothing was imported") from None
    if not results:
        raise UserError(f"{path} holds no results")
    with open_db(db_url) as db:
        added = record_results(db, results)
    return ImportResult(added, len(results) - added, str(path))
