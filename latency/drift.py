"""The machine's drift, taken out of a measurement by reference subnets measured with the jobs.

A shared machine runs slower and faster over minutes (neighbours, frequency, memory placement),
and a chunk of jobs at 224 px takes several minutes to measure. The references (`N_REFS` of the
jobs, in `latency/worker.py`) are visited in the same interleaved rounds as the jobs, so each
visit of a job has reference visits close to it in time. Each job visit's calls are divided by
the median ratio of the `LOCAL_REFS` reference visits nearest to it (in the order the visits
ran) to their baseline medians.

Measured with `bench/drift_local.py` (60 `ofa-mbv3` subnets at 160-224 px measured twice on
this project's 2-core machine, 2026-12-03; share within ±10% / ±5%, Kendall tau):
- `cpu` (20-300 ms): 8 nearest visits 96.7% / 63.3% / 0.969, 5 visits 96.7% / 65.0% / 0.973,
  one factor per chunk (the rule before) 91.7% / 61.7% / 0.959, raw 78.3% / 51.7% / 0.959;
- `tflite-fp32-t1` (1.5-84 ms, a quiet hour: raw already 100% / 96.7% / 0.985): 8 visits
  100% / 95.0% / 0.989, 5 visits 98.3% / 93.3% / 0.989, per chunk 100% / 96.7% / 0.985.
One or three visits did worse than one factor per chunk (`cpu` 66.7% and 95.0% within ±10%):
a visit holds only `per_round` calls, so one reference visit is a noisy clock.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hwnas.latency.protocol import Stats

# The drift policy: every count of reference subnets measured beside others, in one place.
# Light (numpy is imported where it is used): the CLI's help text reads them.

# References per chunk of a job file (`hwnas.latency.worker`): the first jobs, visited again
# in every round of every chunk; a chunk of hundreds of jobs needs a clock that ticks often.
N_REFS = 12
# Reference visits nearest to a job visit whose median ratio divides it (`visit_factors`):
# 8 did best on `bench/drift_local.py` (above); 1 or 3 were noisier than one factor a chunk.
LOCAL_REFS = 8
# Anchors beside a few subnets (a search's front, one exported subnet): subnets measured
# before, measured again so the new figures are in their unit. 4 keep the measurement short
# (the demo's final fronts: 18 of 18 tflite and 17 of 18 cpu subnets within 10% over four
# runs, against 7 and 10 of 16 in one without).
FEW_ANCHORS = 4
# Anchors of a later `hwnas measure` run on a target measured before: as many as a chunk's
# references, so that the run's own references and its anchors are the same subnets.
RUN_ANCHORS = N_REFS
# Subnets `hwnas measure` times twice at the end of a run, for the noise floor.
NOISE_JOBS = 10

Visit = tuple[Hashable, Sequence[float]]  # a runner and the timed calls of one visit


def visit_factors(visits: Sequence[Visit], baseline: dict, k: int = LOCAL_REFS) -> list[float]:
    """Per visit, how much slower the machine ran than at the baseline: the median ratio to
    their baseline of the `k` reference visits nearest to it (ties: the earlier)."""
    import numpy as np

    refs = [(i, float(np.median(t)) / baseline[key])
            for i, (key, t) in enumerate(visits) if key in baseline]  # fmt: skip
    if not refs:
        raise ValueError("no reference was visited")
    where = np.asarray([i for i, _ in refs])
    ratio = np.asarray([r for _, r in refs])
    out = []
    for i in range(len(visits)):
        nearest = np.argsort(np.abs(where - i), kind="stable")[:k]
        out.append(float(np.median(ratio[nearest])))
    return out


def corrected(
    visits: Sequence[Visit], baseline: dict, k: int = LOCAL_REFS, tol: float = math.inf
) -> dict[Hashable, Stats]:
    """Each runner's stats over its visits, every call divided by its visit's factor, over
    the settled visits (`hwnas.latency.timing.settled`, within `tol`); `drift` is the raw
    median over the corrected one. A runner measured again as an outlier
    (`hwnas.latency.timing.measure`) pools the calls of both measurements: the per-visit factors
    take out the interference that made it an outlier, where `measure` alone kept the quieter
    of the two."""
    import numpy as np

    from hwnas.latency.protocol import Stats
    from hwnas.latency.timing import calls_of, settled, summarise

    factors = visit_factors(visits, baseline, k)
    raw: dict[Hashable, list[Sequence[float]]] = {}
    fixed: dict[Hashable, list[Sequence[float]]] = {}
    for (key, times), f in zip(visits, factors, strict=True):
        raw.setdefault(key, []).append(times)
        fixed.setdefault(key, []).append([t / f for t in times])
    out = {}
    for key, calls in fixed.items():
        keep = settled(calls, tol)  # the same visits, corrected and raw
        s = summarise(calls_of(calls, keep))
        drift = float(np.median(calls_of(raw[key], keep))) / s.median_ms
        n_reps = sum(len(v) for v in calls)
        out[key] = Stats(s.median_ms, s.cv, s.iqr_ms, n_reps, drift=drift)
    return out
