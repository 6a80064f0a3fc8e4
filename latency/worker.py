"""The measurement worker: `python -m hwnas.latency.worker jobs.jsonl results.jsonl`.

Runs on the machine being measured with only numpy plus the target's runtime installed (jax for
cpu/gpu, ai-edge-litert for tflite). Jobs are measured in chunks under the protocol of
`hwnas.latency.timing` (warm-up, interleaved rounds, median with its spread, noisy ones again);
results are written atomically when all are done. Exit status 2 on a bad job file or a missing
runtime, with one line saying what is wrong.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from hwnas.exceptions import HwnasError, shown
from hwnas.latency.drift import N_REFS, corrected
from hwnas.latency.fingerprint import fingerprint
from hwnas.latency.jobs import Job, JobFileError, Result, parse_job, read_lines
from hwnas.latency.protocol import Protocol, Stats
from hwnas.latency.runners import RuntimeUnavailable, gpu_name, make_runner
from hwnas.latency.timing import combine, measure

# Jobs interleaved at once, so drift spreads over all of them. XLA's CPU executables each map
# many memory regions (LLVM JIT), and several hundred in one process exhaust the kernel's map
# limit, so JAX targets go in smaller chunks.
CHUNK = {"tflite": 1000, "cpu": 128, "gpu": 128}
# Reference jobs measured in every chunk to take out the drift between chunks. Four were too
# few: in one tflite run the four moved 19% unlike the other subnets, and dividing by their
# median made the re-measured subnets agree worse than raw. The median of 12 is robust to a few.


def measure_jobs(
    jobs: Sequence[Job],
    base: Path,
    protocol: Protocol = Protocol(),
    chunk: int | None = None,
    seed: int = 0,
    on_done: Callable[[int, int], None] | None = None,
    refs: Sequence[Job] | None = None,
    baseline: dict[str, float] | None = None,
    on_visit: Callable[[int, int, str, list[float]], None] | None = None,
) -> list[Result]:
    """Measure `jobs` and return one result per job, in job order.

    Chunks are measured one after another, so the machine may drift between them and while
    one is measured. When jobs span several chunks (or `refs` are given), the reference jobs
    (by default the first `N_REFS`) are measured again in every chunk, interleaved with the
    jobs, and every visit's calls are divided by the drift of the reference visits nearest to
    it against their `baseline` (by default, their medians in the first chunk):
    `latency/drift.py`. The raw median over the corrected one is kept as `drift`.

    All chunks are measured `protocol.passes` times, each pass with its share of the
    repetitions and fresh runners, the references (for jobs of one target, with more than one
    chunk, or more than one pass and more jobs than references) taking the drift out of every
    one; a job's result combines its passes (`protocol.combine`). `on_visit(pass, chunk, job id,
    times)` sees every visit's timed calls, references' included, in the order they ran."""
    chunks = split(jobs, base, chunk)
    passes = max(protocol.passes, 1)
    if refs is None:
        one_target = len({j.target for j in jobs}) == 1
        # across passes only where some jobs are not references: a job that is its own
        # reference would have its second pass scaled back onto its first
        several = len(chunks) > 1 or (passes > 1 and len(jobs) > N_REFS)
        refs = list(jobs[:N_REFS]) if several and one_target else []
    per_job: dict[str, list[Stats]] = {j.id: [] for j in jobs}
    fps: dict[str, dict] = {}
    one_pass = protocol.per_pass()
    for p in range(passes):
        for i, part in enumerate(chunks):
            stats, visits = _measure_chunk(part, refs, base, one_pass, seed + p * len(chunks) + i)
            if on_visit:
                for key, times in visits:
                    on_visit(p, i, key, times)
            if refs:
                if baseline is None:  # the first chunk's medians
                    baseline = {r.id: stats[r.id].median_ms for r in refs}
                local = corrected(visits, baseline, tol=protocol.settle_tol)
                stats = {k: replace(local[k], remeasured=s.remeasured) for k, s in stats.items()}
            gpu = gpu_name() if any(j.target.kind == "gpu" for j in part) else None
            fp = fingerprint(gpu)
            for j in part:
                per_job[j.id].append(stats[j.id])
                fps[j.id] = fp
            if on_done:
                on_done(p * len(jobs) + sum(map(len, chunks[: i + 1])), passes * len(jobs))
    return [
        Result(
            j.id,
            j.target,
            j.subnet_key,
            j.subnet,
            j.kind,
            combine(per_job[j.id]).to_dict(),
            fps[j.id],
            j.run,
            j.space,
            j.weights,
        )
        for j in jobs
    ]


def split(jobs: Sequence[Job], base: Path, chunk: int | None = None) -> list[list[Job]]:
    """Consecutive chunks of at most `chunk` jobs (by default `CHUNK` of the target) whose
    models' weights add up to at most `CHUNK_BYTES` (224-px models weigh 5-25 MB each)."""
    if chunk is None:
        chunk = min(CHUNK[j.target.kind] for j in jobs) if jobs else 1
    out: list[list[Job]] = []
    size = 0
    for j in jobs:
        nbytes = model_bytes(j, base)
        if not out or len(out[-1]) >= chunk or size + nbytes > CHUNK_BYTES:
            out.append([])
            size = 0
        out[-1].append(j)
        size += nbytes
    return out


CHUNK_BYTES = 2**31  # weights of the models held at once


def model_bytes(job: Job, base: Path) -> int:
    """The size of a job's weights: its .tflite file, or what its jax-export payload says."""
    if job.payload.get("type") == "tflite":
        path = base / job.payload["path"]
        return path.stat().st_size if path.is_file() else 0
    return int(job.payload.get("weight_bytes", 0))


def _measure_chunk(
    part: Sequence[Job], refs: Sequence[Job], base: Path, protocol: Protocol, seed: int
) -> tuple[dict[str, Stats], list[tuple[str, list[float]]]]:
    """Build the runners of `part` (and the references not in it), measure them interleaved,
    and free them: their stats, and every visit's (job id, timed calls) in the order they ran."""
    ids = {j.id for j in part}
    runners = {j.id: make_runner(j, base) for j in [*part, *(r for r in refs if r.id not in ids)]}
    visits: list[tuple[str, list[float]]] = []
    stats = measure(runners, protocol, seed=seed, on_visit=lambda k, t: visits.append((k, t)))
    del runners
    jax = sys.modules.get("jax")  # only where a job already imported it
    if jax is not None:  # free the chunk's executables (and their memory maps)
        jax.clear_caches()
    return stats, visits


def write_results(results: Sequence[Result], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in results:
            f.write(r.to_json() + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hwnas.latency.worker",
        description="Measure the latency jobs of JOBS (written by `hwnas measure --jobs-out`) "
        "on this machine and write RESULTS for `hwnas measure --import`.",
    )
    parser.add_argument("jobs", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument(
        "--chunk", type=int, default=None, help="jobs measured interleaved (default by target)"
    )
    parser.add_argument(
        "--max-reps", type=int, default=Protocol.max_reps, help="most timed calls per model"
    )
    parser.add_argument(
        "--passes", type=int, default=Protocol.passes, help="passes over all the models"
    )
    args = parser.parse_args(argv)
    try:
        protocol = Protocol.limited(args.passes, args.max_reps)
    except HwnasError as e:
        print(f"error: {shown(e, flags=True)}", file=sys.stderr)
        return 2
    try:
        jobs = read_lines(args.jobs, parse_job)
        if not jobs:
            raise JobFileError(f"{args.jobs} holds no jobs")

        def progress(done: int, total: int) -> None:
            print(f"measured {done}/{total}", file=sys.stderr, flush=True)

        results = measure_jobs(jobs, args.jobs.parent, protocol, args.chunk, on_done=progress)
    except OSError as e:
        print(f"error: cannot read {e.filename}: {e.strerror}", file=sys.stderr)
        return 2
    except (JobFileError, RuntimeUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_results(results, args.results)
    print(f"wrote {len(results)} results to {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
