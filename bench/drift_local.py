"""Drift taken out per chunk, or per visit from the references measured nearest in time: which
makes two measurements of the same subnets agree better?

Measures the last `--n` subnets of a work folder prepared by `bench/predictor_accuracy.py
--work DIR` twice (phases A and B), each with the folder's reference subnets, recording the timed
calls of every visit. Then it scores, on the same calls, how well A and B agree (share within
±10% and ±5%, Kendall tau, and the mean log ratio B/A: the level shift left between them) under:

- raw: no correction;
- chunk: each chunk's medians divided by the median ratio of the references' medians to their
  baseline (what `latency/worker.py` did before 2026-12-03);
- local-K: each visit's calls divided by the median ratio of the K reference visits nearest to
  it in time (in the same pass and chunk) to their baseline (`latency/drift.py`, K = 8, is what
  it does now). Both score every visit's calls, a re-measured outlier's included.

The baseline is the folder's (`baseline-K.json`). A phase's visits are kept in
`DIR/visits-K-PHASE.jsonl` once measured, so a stopped bench resumes at the next phase.

    PYTHONPATH=. python bench/drift_local.py --work /work/bench-work/ofa-mbv3 --target cpu --n 60
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from hwnas.latency import drift
from hwnas.latency.drift import N_REFS
from hwnas.latency.jobs import parse_job
from hwnas.latency.metrics import agreement
from hwnas.latency.protocol import Protocol
from hwnas.latency.targets import Target
from hwnas.latency.workdir import TargetWork, read_complete
from hwnas.latency.worker import measure_jobs
from hwnas.search.output import show_logs

PHASES = ("A", "B")
KS = (1, 3, 5, 8)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def measure_phase(tw: TargetWork, phase: str, jobs, refs, protocol: Protocol) -> list[dict]:
    """Every visit of `phase` (pass, chunk, job, timed calls in ms), measured or read back."""
    path = tw.root / f"visits-{tw.target.key}-{phase}.jsonl"
    if path.exists():
        return [json.loads(line) for line in path.read_text().splitlines()]
    visits: list[dict] = []

    def record(p: int, chunk: int, job: str, times: list[float]) -> None:
        visits.append({"pass": p, "chunk": chunk, "job": job, "times": times})

    t0 = time.perf_counter()
    measure_jobs(jobs, tw.root, protocol, seed=len(phase) + ord(phase[0]), refs=refs,
                 on_visit=record)  # fmt: skip
    log(f"  phase {phase}: {len(visits)} visits in {time.perf_counter() - t0:.0f} s")
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(v) + "\n" for v in visits))
    tmp.replace(path)
    return visits


def by_stretch(visits: list[dict]) -> dict[tuple[int, int], list[dict]]:
    """The visits of each (pass, chunk), in the order they ran."""
    out: dict[tuple[int, int], list[dict]] = {}
    for v in visits:
        out.setdefault((v["pass"], v["chunk"]), []).append(v)
    return out


def corrected(visits: list[dict], baseline: dict[str, float], method: str, k: int = 0) -> dict:
    """Each job's latency (ms): the mean over passes of the median of its calls, corrected by
    `method` (raw, chunk, or local with the `k` nearest reference visits: `latency/drift.py`)."""
    per_pass: dict[str, list[float]] = {}
    for stretch in by_stretch(visits).values():
        pairs = [(v["job"], v["times"]) for v in stretch]
        if method == "local":
            medians = {j: s.median_ms for j, s in drift.corrected(pairs, baseline, k).items()}
        else:
            calls: dict[str, list[float]] = {}
            for job, times in pairs:
                calls.setdefault(job, []).extend(times)
            medians = {j: float(np.median(c)) for j, c in calls.items()}
            if method == "chunk":
                f = float(np.median([medians[j] / b for j, b in baseline.items()]))
                medians = {j: m / f for j, m in medians.items()}
        for job, m in medians.items():
            per_pass.setdefault(job, []).append(m)
    return {job: float(np.mean(m)) for job, m in per_pass.items()}


def score(a: dict, b: dict, jobs: list[str]) -> dict:
    x = np.asarray([a[j] for j in jobs])
    y = np.asarray([b[j] for j in jobs])
    return agreement(y, x) | {"mean_log_ratio": float(np.mean(np.log(y / x)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--target", default="cpu")
    parser.add_argument("--n", type=int, default=60)
    args = parser.parse_args()
    show_logs()
    tw = TargetWork(args.work, Target.parse(args.target))
    jobs = [j for j in read_complete(tw.jobs_file, parse_job) if j.kind == "subnet"]
    refs, test = jobs[:N_REFS], jobs[-args.n :]
    baseline = tw.baseline()
    if baseline is None:
        raise SystemExit(f"{tw.baseline_file} is missing: run bench/predictor_accuracy.py first")
    visits = {p: measure_phase(tw, p, test, refs, Protocol()) for p in PHASES}
    ids = [j.id for j in test]
    rows = {}
    for method, k in [("raw", 0), ("chunk", 0), *(("local", k) for k in KS)]:
        a, b = (corrected(visits[p], baseline, method, k) for p in PHASES)
        rows[f"{method}-{k}" if k else method] = score(a, b, ids)
    print(json.dumps({"target": tw.target.key, "n": len(ids), "refs": len(refs), "scores": rows}))


if __name__ == "__main__":
    main()
