"""The measurement protocol: warm-up, interleaved rounds, a stopping rule on the median's
confidence interval, the spread kept with every median, and noisy results measured again.

- Warm-up: every runner is called `warmup` times before any timing (caches, lazy init, JIT).
- Interleaving: each round visits the runners in a fresh random order and times `per_round`
  calls of each, so slow drift of the machine (other jobs, frequency) spreads over all of them
  instead of biasing whichever ran during a slow spell. Each visit starts with untimed calls
  until `rewarm_calls` calls or `rewarm_ms` have passed, whichever comes first: after any
  interruption (another model, even a 3 ms busy loop) the next calls run slow and speed up
  over several calls. Measured on this project's 2-vCPU machine, LiteRT/XNNPACK's first call
  after a switch took 1.4-2.4x its steady time and the fourth still 1.02-1.06x; XLA's cpu
  calls (4-13 ms) showed no such transient. Timing from the second call (the rule before)
  put six 0.3-0.7 ms models' medians 18-28% above their times run alone, and their relative
  IQR went from 0.11-0.14 to 0.23-0.47.
- Stopping: a runner stops once it has `min_reps` samples and the distribution-free 95%
  confidence interval of its median (order statistics, binomial) is within `rel_ci` of the
  median, or its timed calls have taken `max_ms`, or at `max_reps`. On this project's
  machine the interval rule alone never stops a model (XLA cpu's calls vary by 13-20%,
  LiteRT's by ~20%: a 1% interval needs over a thousand calls), so the time budget decides:
  a 0.1 ms tflite model gets `max_reps` calls for 0.1 s, a 10 ms cpu model 200 calls for 2 s
  (a fixed cap of 200 calls gave the small models the same noisy median as the large ones).
- Spread: every median carries its coefficient of variation and inter-quartile range.
- Passes: the repetitions are split over `passes` passes over all the jobs (the worker's
  loop), each with freshly built runners, and a job's result is the mean of its passes'
  medians. A stopping rule sees only the spread within one stretch of time; the machine's
  state (neighbours, placement of the model in memory) also shifts over minutes, unlike for
  every model alike, and one pass cannot see that. On this project's 2-vCPU machine the same
  100 subnets measured in two sessions ranked alike with Kendall tau 0.91-0.94, and a
  predictor ranked against the mean of the two sessions 0.01-0.03 higher than against either.
- Settled visits (`settle_tol`, off by default): a runner's median over the calls of its
  visits whose own median is within `settle_tol` of the 25th percentile of its visits'
  medians, setting aside those that ran while something else held the core. On this
  project's shared 2-vCPU machine a sub-0.15 ms LiteRT model's calls switch for hundreds of
  milliseconds at a time between a fast regime and one 1.2-1.6x slower. Offline, on four
  sessions' recorded visits of 24 `digits` models, a 10% tolerance brought the sub-0.3 ms
  models' session medians from up to 25% apart to at most 6%; but measured end to end
  (`bench/protocol_repeat.py`, drift references in play) it left the 0.15-0.5 ms models'
  sessions a median 11% apart against 4% without, because the references' baseline and the
  anchors' stored medians are then settled medians while the drift factors compare raw visit
  medians to them. It stays an option until the drift correction settles alike.
- Outliers: a runner whose IQR exceeds `remeasure_iqr` of its median, and (among
  `OUTLIER_MIN_RUNNERS` or more) twice the median relative IQR of the runners measured with
  it, was measured during interference; it is measured again from scratch and the quieter of
  the two results is kept. The relative part matters where a runtime's own call-to-call
  spread exceeds the absolute threshold (XLA on a shared 2-vCPU machine: a CV of 13-20% on
  every model): there a fixed threshold flags nearly every runner and measures it twice.
The settings and result types are in `latency/protocol.py`. numpy only (the worker runs where
nothing else is installed).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import TypeVar

import numpy as np

from hwnas.latency.protocol import Protocol, Stats


def combine(passes: list[Stats]) -> Stats:
    """One result from the same runner's passes (each in the baseline's units): the mean of
    their medians and spreads, all their repetitions, and as `drift` the factor that turns
    the combined median back into the mean of the raw (uncorrected) medians."""
    if len(passes) == 1:
        return passes[0]
    median = float(np.mean([s.median_ms for s in passes]))
    raw = float(np.mean([s.median_ms * s.drift for s in passes]))
    return Stats(
        median,
        float(np.mean([s.cv for s in passes])),
        float(np.mean([s.iqr_ms for s in passes])),
        sum(s.n_reps for s in passes),
        any(s.remeasured for s in passes),
        raw / median,
    )


def median_ci(samples: np.ndarray, z: float = 1.96) -> tuple[float, float]:
    """Distribution-free confidence interval of the median from order statistics."""
    s = np.sort(samples)
    n = len(s)
    half = z * math.sqrt(n) / 2
    lo = max(math.floor(n / 2 - half), 0)
    hi = min(math.ceil(n / 2 + half), n - 1)
    return float(s[lo]), float(s[hi])


SETTLED_QUANTILE = 25  # the percentile of a runner's visit medians that sets its settled level


def settled(visits: Sequence[Sequence[float]], tol: float) -> list[int]:
    """The settled visits' indices: those whose median is at most `1 + tol` times the
    `SETTLED_QUANTILE` percentile of the visits' medians (all of them when `tol` is infinite)."""
    if math.isinf(tol):
        return list(range(len(visits)))
    medians = np.asarray([np.median(v) for v in visits])
    level = np.percentile(medians, SETTLED_QUANTILE)
    return [i for i, m in enumerate(medians) if m <= (1 + tol) * level]


def calls_of(visits: Sequence[Sequence[float]], which: Sequence[int]) -> np.ndarray:
    return np.concatenate([np.asarray(visits[i], dtype=float) for i in which])


def summarise_visits(
    visits: Sequence[Sequence[float]], tol: float, remeasured: bool = False
) -> Stats:
    """A runner's stats over the calls of its settled visits (`settled`); `n_reps` counts
    every timed call."""
    s = summarise(calls_of(visits, settled(visits, tol)), remeasured)
    return dataclasses.replace(s, n_reps=sum(len(v) for v in visits))


def summarise(samples_ms: np.ndarray, remeasured: bool = False) -> Stats:
    q1, med, q3 = np.percentile(samples_ms, [25, 50, 75])
    cv = float(np.std(samples_ms) / np.mean(samples_ms))
    return Stats(float(med), cv, float(q3 - q1), len(samples_ms), remeasured)


def converged(samples_ms: np.ndarray, p: Protocol) -> bool:
    n = len(samples_ms)
    if n >= p.max_reps:
        return True
    if n < p.min_reps:
        return False
    if float(np.sum(samples_ms)) >= p.max_ms:
        return True
    lo, hi = median_ci(samples_ms)
    return (hi - lo) / 2 <= p.rel_ci * float(np.median(samples_ms))


def time_calls(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def rewarm(fn: Callable[[], object], p: Protocol) -> None:
    """Untimed calls after a switch: `p.rewarm_calls` of them, or fewer once `p.rewarm_ms`
    have passed (at least one)."""
    end = time.perf_counter_ns() + p.rewarm_ms * 1e6
    for _ in range(max(p.rewarm_calls, 1)):
        fn()
        if time.perf_counter_ns() >= end:
            return


K = TypeVar("K", bound=Hashable)  # a runner's key (the worker's: a job id)


def _rounds(
    runners: Mapping[K, Callable[[], object]],
    p: Protocol,
    rng: np.random.Generator,
    on_round: Callable[[int, int], None] | None,
    on_visit: Callable[[K, list[float]], None] | None = None,
) -> dict[K, list[list[float]]]:
    """Every runner's visits, each the list of its timed calls."""
    visits: dict[K, list[list[float]]] = {k: [] for k in runners}
    pending = list(runners)
    while pending:
        for k in rng.permutation(len(pending)):
            key = pending[int(k)]
            rewarm(runners[key], p)
            times = time_calls(runners[key], p.per_round)
            visits[key].append(times)
            if on_visit:
                on_visit(key, times)
        pending = [k for k in pending if not converged(np.concatenate(visits[k]), p)]
        if on_round:
            on_round(len(runners) - len(pending), len(runners))
    return visits


OUTLIER_MIN_RUNNERS = 8


def outliers(stats: Mapping[K, Stats], p: Protocol) -> list[K]:
    """Runners measured during interference: a relative IQR above `p.remeasure_iqr` and, when
    there are enough runners to compare, above twice their median relative IQR."""
    rel = {k: s.iqr_ms / s.median_ms for k, s in stats.items()}
    limit = p.remeasure_iqr
    if len(rel) >= OUTLIER_MIN_RUNNERS:
        limit = max(limit, 2 * float(np.median(list(rel.values()))))
    return [k for k, r in rel.items() if r > limit]


def measure(
    runners: Mapping[K, Callable[[], object]],
    protocol: Protocol = Protocol(),
    seed: int = 0,
    on_round: Callable[[int, int], None] | None = None,
    on_visit: Callable[[K, list[float]], None] | None = None,
) -> dict[K, Stats]:
    """Median latency (ms) of every runner under the protocol; runners are called with no
    arguments and must block until their result is ready. `on_visit(key, times)` sees every
    visit's timed calls in the order they ran."""
    rng = np.random.default_rng(seed)
    for fn in runners.values():
        for _ in range(protocol.warmup):
            fn()
    first = _rounds(runners, protocol, rng, on_round, on_visit)
    stats = {k: summarise_visits(v, protocol.settle_tol) for k, v in first.items()}
    noisy = {k: runners[k] for k in outliers(stats, protocol)}
    if noisy:
        again = _rounds(noisy, protocol, rng, None, on_visit)
        for k, v in again.items():
            second = summarise_visits(v, protocol.settle_tol, remeasured=True)
            if second.iqr_ms / second.median_ms < stats[k].iqr_ms / stats[k].median_ms:
                stats[k] = second
            else:
                stats[k] = dataclasses.replace(stats[k], remeasured=True)
    return stats
