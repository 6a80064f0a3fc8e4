"""A resumable work folder for latency measurements (a bench's `--work DIR`): models are
prepared one at a time and measured a batch at a time, each appended to a file as soon as it
is done, so a bench stopped anywhere (end of a sitting, kill -9) continues where it stopped.

Per target key K, the folder holds `jobs-K.jsonl` (the prepared jobs, models in `models-K/`),
`results-K-PHASE.jsonl` (the measurements of each phase), `baseline-K.json` (the reference
subnets' first medians: every later batch is scaled by the machine's drift against them) and
`clock-K.json` (the seconds spent preparing and measuring, per kind of job).
"""

from __future__ import annotations

import json
import os
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hwnas.latency.jobs import Job, Result, parse_job, parse_result
from hwnas.latency.protocol import Protocol
from hwnas.latency.targets import Target
from hwnas.latency.worker import measure_jobs

BATCH = 100  # jobs measured interleaved between two saves

T = TypeVar("T")
Log = Callable[[str], None]


def read_complete(path: Path, parse: Callable[[str], T]) -> list[T]:
    """The lines of `path` up to the last complete one (a kill can cut the last short)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")[:-1]  # whatever follows the last newline is incomplete
    return [parse(line) for line in lines if line.strip()]


def append(path: Path, lines: Sequence[str]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))
        f.flush()
        os.fsync(f.fileno())


class TargetWork:
    """One target's part of the work folder."""

    def __init__(self, root: Path, target: Target) -> None:
        self.root, self.target = root, target
        key = target.key
        self.models = root / f"models-{key}"
        self.jobs_file = root / f"jobs-{key}.jsonl"
        self.baseline_file = root / f"baseline-{key}.json"
        self.clock_file = root / f"clock-{key}.json"

    # ---- time spent ----------------------------------------------------------------------
    def clock(self) -> dict[str, dict[str, float]]:
        if self.clock_file.exists():
            return json.loads(self.clock_file.read_text())
        return {}

    def _tick(self, what: str, kind: str, seconds: float, n: int) -> None:
        c = self.clock()
        entry = c.setdefault(f"{what}_{kind}", {"seconds": 0.0, "n": 0})
        entry["seconds"] += seconds
        entry["n"] += n
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(c))
        tmp.replace(self.clock_file)

    def seconds_per(self, kind: str) -> float:
        """Wall seconds to prepare and measure one job of `kind` (subnet or block)."""
        c = self.clock()
        out = 0.0
        for what in ("prepare", "measure"):
            e = c.get(f"{what}_{kind}")
            if e and e["n"]:
                out += e["seconds"] / e["n"]
        return out

    # ---- preparing -----------------------------------------------------------------------
    def prepare(
        self,
        wanted: Sequence[tuple[str, Any, str]],
        build: Callable[[str, Any], Job],
        log: Log,
    ) -> list[Job]:
        """Jobs for `wanted` ((kind, subnet or layer, key) triples), in order:
        those prepared before are read back, the rest built with `build(kind, item)`."""
        self.models.mkdir(parents=True, exist_ok=True)
        have = {(j.kind, j.subnet_key): j for j in read_complete(self.jobs_file, parse_job)}
        out = []
        for i, (kind, item, key) in enumerate(wanted):
            job = have.get((kind, key))
            if job is None:
                t0 = time.perf_counter()
                job = build(kind, item)
                append(self.jobs_file, [job.to_json()])
                self._tick("prepare", kind, time.perf_counter() - t0, 1)
                have[(kind, key)] = job
                if (i + 1) % 25 == 0 or i + 1 == len(wanted):
                    log(f"  {self.target.key}: prepared {i + 1}/{len(wanted)}")
            out.append(job)
        return out

    # ---- measuring -----------------------------------------------------------------------
    def baseline(self) -> dict[str, float] | None:
        if self.baseline_file.exists():
            return json.loads(self.baseline_file.read_text())
        return None

    def measure(
        self,
        phase: str,
        jobs: Sequence[Job],
        refs: Sequence[Job],
        protocol: Protocol,
        log: Log,
        per_batch: int = BATCH,
    ) -> dict[str, Result]:
        """Results of `jobs` for `phase`, by job id: those measured before are read back, the
        rest measured `per_batch` at a time with the references (all of a batch's runners are
        built before timing: fewer where models are large), each batch's drift taken out
        against the baseline (set by the first batch ever measured)."""
        path = self.root / f"results-{self.target.key}-{phase}.jsonl"
        done = {r.job: r for r in read_complete(path, parse_result)}
        baseline = self.baseline()
        ref_ids = {r.id for r in refs}
        todo = [j for j in jobs if j.id not in done]
        if baseline is None:  # the first batch sets it: the references go first
            todo.sort(key=lambda j: j.id not in ref_ids)
            if not ref_ids <= {j.id for j in todo}:
                raise ValueError("the first phase measured must hold the reference jobs")
        for b in range(0, len(todo), per_batch):
            batch = todo[b : b + per_batch]
            t0 = time.perf_counter()
            seed = len(done) + b + zlib.crc32(phase.encode()) % 1000
            results = measure_jobs(batch, self.root, protocol, seed=seed, refs=refs,
                                   baseline=baseline)  # fmt: skip
            seconds = time.perf_counter() - t0
            if baseline is None:
                baseline = {r.job: r.stats["median_ms"] for r in results if r.job in ref_ids}
                self.baseline_file.write_text(json.dumps(baseline))
            append(path, [r.to_json() for r in results])
            done |= {r.job: r for r in results}
            for kind in ("subnet", "block"):
                n = sum(j.kind == kind for j in batch)
                if n:
                    self._tick("measure", kind, seconds * n / len(batch), n)
            log(f"  {self.target.key} ({phase}): measured {len(done)}/{len(jobs)}")
        return done
