"""The measurement worker: `python -m latency.worker jobs.jsonl results.jsonl`.

Runs on the machine being measured with only numpy plus the target's runtime installed (jax for
cpu/gpu, ai-edge-litert for tflite). Jobs are measured in chunks under the protocol of
`latency.protocol` (warm-up, interleaved rounds, median with its spread, noisy ones again);
results are written atomically when all are done. Exit status 2 on a bad job file or a missing
runtime, with one line saying what is wrong.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from latency.fingerprint import fingerprint
from latency.jobs import Job, JobFileError, Result, parse_job, read_lines
from latency.protocol import Protocol, measure
from latency.runners import RuntimeUnavailable, gpu_name, make_runner

# Jobs interleaved at once, so drift spreads over all of them. XLA's CPU executables each map
# many memory regions (LLVM JIT), and several hundred in one process exhaust the kernel's map
# limit, so JAX targets go in smaller chunks.
CHUNK = {"tflite": 1000, "cpu": 128, "gpu": 128}
# Reference jobs measured in every chunk to take out the drift between chunks.
N_REFS = 4


def measure_jobs(
    jobs: Sequence[Job],
    base: Path,
    protocol: Protocol = Protocol(),
    chunk: int | None = None,
    seed: int = 0,
    on_done: Callable[[int, int], None] | None = None,
    refs: Sequence[Job] | None = None,
    baseline: dict[str, float] | None = None,
) -> list[Result]:
    """Measure `jobs` and return one result per job, in job order.

    Chunks are measured one after another, so the machine may drift between them. When jobs
    span several chunks (or `refs` are given), the reference jobs (by default the first
    `N_REFS`) are measured again in every chunk and each chunk's medians are divided by its
    drift: the median ratio of the references' medians to their `baseline` (by default, their
    medians in the first chunk). The factor is kept in the stats as `drift`."""
    results: dict[str, Result] = {}
    if chunk is None:
        chunk = min(CHUNK[j.target.kind] for j in jobs) if jobs else 1
    chunks = [jobs[s : s + chunk] for s in range(0, len(jobs), chunk)]
    if refs is None:
        one_target = len({j.target for j in jobs}) == 1
        refs = list(jobs[:N_REFS]) if len(chunks) > 1 and one_target else []
    done = 0
    for i, part in enumerate(chunks):
        ids = {j.id for j in part}
        runners = {
            j.id: make_runner(j, base) for j in [*part, *(r for r in refs if r.id not in ids)]
        }
        stats = measure(runners, protocol, seed=seed + i)
        if baseline is None and refs:
            baseline = {r.id: stats[r.id].median_ms for r in refs}
        factor = drift(stats, baseline) if refs else 1.0
        gpu = gpu_name() if any(j.target.kind == "gpu" for j in part) else None
        fp = fingerprint(gpu)
        for j in part:
            st = stats[j.id].rescaled(factor).to_dict()
            results[j.id] = Result(j.id, j.target, j.subnet_key, j.subnet, j.kind, st, fp, j.run)
        del runners
        jax = sys.modules.get("jax")  # only where a job already imported it
        if jax is not None:  # free the chunk's executables (and their memory maps)
            jax.clear_caches()
        done += len(part)
        if on_done:
            on_done(done, len(jobs))
    return [results[j.id] for j in jobs]


def drift(stats: dict, baseline: dict[str, float]) -> float:
    """How much slower the machine ran than at the baseline: median over the references."""
    return float(np.median([stats[k].median_ms / v for k, v in baseline.items()]))


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
        prog="python -m latency.worker",
        description="Measure the latency jobs of JOBS (written by `hwnas measure --jobs-out`) "
        "on this machine and write RESULTS for `hwnas measure --import`.",
    )
    parser.add_argument("jobs", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument(
        "--chunk", type=int, default=None, help="jobs measured interleaved (default by target)"
    )
    parser.add_argument("--max-reps", type=int, default=Protocol.max_reps)
    args = parser.parse_args(argv)
    try:
        jobs = read_lines(args.jobs, parse_job)
        if not jobs:
            raise JobFileError(f"{args.jobs} holds no jobs")

        def progress(done: int, total: int) -> None:
            print(f"measured {done}/{total}", file=sys.stderr, flush=True)

        protocol = Protocol(max_reps=args.max_reps)
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
