"""Service functions for latency: measure subnets (here or through a job file), import worker
results, fit and evaluate predictors, predict one subnet.

Inputs are validated before anything is written; measurements and predictors are recorded
through `db/`, and the work itself runs in `latency/`.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
from hwnas.db.models import Measurement, Run
from hwnas.db.queries import ensure_space, ensure_target, space_names
from hwnas.db.session import Database, open_db
from hwnas.latency import metrics
from hwnas.latency.jobs import JobFileError, Result, parse_result, read_lines
from hwnas.latency.protocol import Protocol
from hwnas.latency.targets import Target, TargetError
from hwnas.latency.worker import N_REFS, measure_jobs
from hwnas.search.output import UserError
from hwnas.search.search_config import NOISE_JOBS
from hwnas.search.services.anchors import anchors
from hwnas.search.services.model_source import RunContext, SpaceContext
from hwnas.search.services.recorded_runs import load_run
from hwnas.supernet.compile_cache import enable_compile_cache
from hwnas.supernet.space import SearchSpace, Subnet
from sqlalchemy import select
from tqdm import tqdm

logger = logging.getLogger(__name__)


def protocol_for(passes: int, max_reps: int) -> Protocol:
    """The default protocol with a user's `passes` and `max_reps`, checked (HwnasError)."""
    return Protocol.limited(passes, max_reps)


def parse_target(kind: str, threads: int = 1, precision: str = "fp32", device: str = "") -> Target:
    try:
        if "-" in kind or "@" in kind:
            return Target.parse(kind)
        return Target(kind, threads, precision, device)
    except TargetError as e:
        if "-" in kind or "@" in kind:  # a full key: its settings are in --target itself
            raise UserError(f"--target {kind}: {e}") from None
        if e.field is not None:  # a setting given by itself (threads): the caller names it
            raise
        raise UserError(str(e)) from None


def sample_subnets(space: SearchSpace, n: int, seed: int, spread: float = 0.0) -> list[Subnet]:
    """`n` distinct random subnets (the same for the same seed): a share `spread` of them with
    sizes spread evenly over the whole range (`SearchSpace.sample_sized`), the rest uniform."""
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    rng, seen, out = np.random.default_rng((seed, 31)), set(), []
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


def _check_local(target: Target) -> None:
    if target.kind == "gpu":
        from hwnas.latency.runners import gpu_name

        if gpu_name() is None:
            raise UserError(
                "target gpu: this machine has no CUDA device visible to JAX; write a job file "
                "with --jobs-out and run `python -m hwnas.latency.worker` on a GPU machine"
            )


def anchor_jobs(ctx: Source, target: Target, refs, stored, model_dir: Path):
    """The anchors' jobs (`search/services/anchors.py`) and the drift baseline `measure_jobs`
    takes: their stored medians by job id. None of either without anchors."""
    if not refs:
        return None, None
    jobs = build_jobs_for(ctx, target, refs, False, model_dir)
    return jobs, {j.id: ms for j, ms in zip(jobs, stored, strict=True)}


def build_jobs_for(ctx: Source, target: Target, subnets, blocks: bool, model_dir: Path):
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
) -> dict:
    """Measure `n` random subnets (and with `blocks` every lookup-table layer) on `target`
    here and record them; with `jobs_out`, write a job file for a worker instead. With
    `noise`, the last subnets are measured again and their agreement reported. The models
    carry the run's trained weights, or with `space` and no run, initialised ones."""
    if jobs_out is not None:
        _check_job_file_options(protocol, noise)
        _check_jobs_out(Path(jobs_out))
    else:
        _check_local(target)
    with open_db(db_url, create=run_name is None) as db:
        ctx = source(db, run_name, space)
        subnets = sample_subnets(ctx.space, n, seed, spread=SPREAD)
        if jobs_out is not None:
            return _write_jobs(db, ctx, target, subnets, blocks, Path(jobs_out))
        enable_compile_cache()
        refs, stored = anchors(db, ctx.space, target, subnets, N_REFS)
        with tempfile.TemporaryDirectory(prefix="hwnas-measure-") as tmp:
            model_dir = Path(tmp) / "models"
            model_dir.mkdir()
            jobs = build_jobs_for(ctx, target, subnets, blocks, model_dir)
            ref_jobs, baseline = anchor_jobs(ctx, target, refs, stored, model_dir)
            results = _measure_local(jobs, Path(tmp), protocol, ref_jobs, baseline)
            floor = _own_noise_floor(jobs, results, Path(tmp), protocol) if noise else None
        stored = record_results(db, results, {ctx.space.key: ctx.space})
        out = summary(target, results, stored) | {"noise": floor}
        return out | {"space": ctx.space.name, "space_key": ctx.space.key, "weights": ctx.weights}


def source(db: Database, run_name: str | None, space: SearchSpace | None) -> Source:
    """The models to measure: the run's (checked against `space` if both are given), or the
    space's with initialised weights."""
    if run_name is None:
        if space is None:
            raise UserError("give --run NAME or --space NAME|FILE (the subnets to measure)")
        logger.info(
            f"measuring space {space.name} with initialised weights (no trained run needed)"
        )
        return SpaceContext(space)
    run = load_run(db, run_name)
    trained = SearchSpace.from_dict(run.space)
    if space is not None and space.key != trained.key:
        raise UserError(
            f"run {run_name} trained space {trained.name}, not {space.name}; give one of "
            "--run and --space"
        )
    return RunContext(run)


def _check_jobs_out(path: Path) -> None:
    if path.exists():
        raise UserError(f"{path} exists; choose another --jobs-out file")
    if not path.parent.is_dir():
        raise UserError(f"--jobs-out: folder {path.parent} does not exist")


def _check_job_file_options(protocol: Protocol, noise: bool) -> None:
    """A job file is measured by the worker, under the worker's own options."""
    if protocol != Protocol():
        raise UserError(
            "--passes and --max-reps apply to measuring here; with --jobs-out give them to "
            "`python -m hwnas.latency.worker`"
        )
    if not noise:
        raise UserError("--no-noise-floor applies to measuring here; drop it with --jobs-out")


def _measure_local(jobs, base: Path, protocol: Protocol, refs, baseline) -> list[Result]:
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


def _own_noise_floor(jobs, results: list[Result], base: Path, protocol: Protocol) -> dict:
    """The last subnets measured again, the first as references: apart where n allows."""
    sub = [j for j in jobs if j.kind == "subnet"]
    floor = noise_floor(sub[-NOISE_JOBS:], sub[:N_REFS], results, base, protocol)
    floor.pop("again_ms")
    return floor


def noise_floor(
    again, refs, results: list[Result], base: Path, protocol: Protocol = Protocol()
) -> dict:
    """Measure the `again` jobs a second time, after all the others, and say how often the two
    measurements of a subnet agree within 5% and 10% and how well they rank alike (Kendall
    tau, the ceiling of any predictor's): drift-corrected (the `refs` measured again give the
    machine's drift since their first measurement), and raw (`raw`)."""
    first = {r.job: r.stats for r in results}
    baseline = {j.id: first[j.id]["median_ms"] for j in refs}
    second = measure_jobs(again, base, protocol, seed=1, refs=refs, baseline=baseline)
    pairs = remeasure_agreement([first[r.job] for r in second], [r.stats for r in second])
    return pairs | {"again_ms": [r.stats["median_ms"] for r in second]}


def remeasure_agreement(first: list[dict], second: list[dict]) -> dict:
    """Agreement of two measurements (stats) of the same models: drift-corrected, and raw."""
    a = np.asarray([st["median_ms"] for st in first])
    b = np.asarray([st["median_ms"] for st in second])
    a_raw = a * np.asarray([st.get("drift", 1.0) for st in first])
    b_raw = b * np.asarray([st.get("drift", 1.0) for st in second])
    return agreement(a, b) | {"raw": agreement(a_raw, b_raw)}


def agreement(first: np.ndarray, second: np.ndarray) -> dict:
    """How a second measurement agrees with the first (`hwnas.latency.metrics.agreement`)."""
    return metrics.agreement(second, first)


def _write_jobs(db: Database, ctx: Source, target: Target, subnets, blocks: bool,
                path: Path) -> dict:  # fmt: skip
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
    return {"target": target.key, "jobs": len(jobs), "path": str(path)}


def summary(target: Target, results: list[Result], stored: int) -> dict:
    cvs = [r.stats["cv"] for r in results if r.kind == "subnet"]
    return {
        "target": target.key,
        "measured": len(results),
        "stored": stored,
        "median_cv": float(np.median(cvs)) if cvs else None,
        "median_ms": float(np.median([r.stats["median_ms"] for r in results])),
        "median_reps": float(np.median([r.stats["n_reps"] for r in results])),
    }


def record_results(
    db: Database, results: list[Result], spaces: dict[str, SearchSpace] | None = None
) -> int:
    """Insert results not yet stored (a result's source is its job id); returns how many.
    Each is recorded under its space: the one it names (known here, or in `spaces`), or for
    results written before spaces were named, its run's."""
    sources = [f"job:{r.job}"[:64] for r in results]
    with db.write() as s:
        runs = {name: (rid, SearchSpace.from_dict(sp)) for rid, name, sp in s.execute(
            select(Run.id, Run.name, Run.space)).all()}  # fmt: skip
        have = set()
        for i in range(0, len(sources), 500):
            chunk = sources[i : i + 500]
            have |= set(s.scalars(select(Measurement.source).where(Measurement.source.in_(chunk))))
        known = set(space_names(s))
        added = 0
        for r, src in zip(results, sources, strict=True):
            if src in have:
                continue
            have.add(src)
            key = _space_key(s, r, runs, known, spaces or {})
            t = ensure_target(s, r.target.key, r.target.kind, r.target.settings(), r.fingerprint)
            st = r.stats
            s.add(
                Measurement(
                    target_id=t.id,
                    run_id=runs[r.run][0] if r.run in runs else None,
                    space_key=key,
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
            )
            added += 1
    return added


def _space_key(s, r: Result, runs: dict, known: set[str], spaces: dict) -> str:
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


def import_results(db_url: str | None, path: str | Path) -> dict:
    """Import a worker's results file: all lines or none; lines already imported are skipped."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--import: no such file {path}")
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
    return {"imported": added, "skipped": len(results) - added, "path": str(path)}
