"""The measurement protocol's settings (`Protocol`) and one runner's result (`Stats`).

Plain dataclasses without numpy, so the CLI can show the defaults in `--help` without importing
it; the measurement itself (warm-up, interleaved rounds, stopping rule, outliers) is
`latency/timing.py`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from hwnas.exceptions import HwnasError


@dataclass(frozen=True)
class Protocol:
    warmup: int = 5
    per_round: int = 5
    rewarm_calls: int = 5
    rewarm_ms: float = 5.0
    passes: int = 2

    def per_pass(self) -> Protocol:
        """The repetitions of one pass: the budget split over `passes`."""
        n = max(self.passes, 1)
        return dataclasses.replace(
            self,
            min_reps=-(-self.min_reps // n),
            max_reps=-(-self.max_reps // n),
            max_ms=self.max_ms / n,
            passes=1,
        )

    min_reps: int = 20
    max_reps: int = 1000
    max_ms: float = 2000.0
    rel_ci: float = 0.01
    remeasure_iqr: float = 0.10
    # a visit this far above the runner's settled ones is set aside (`timing.settled`); off
    # by default: see the timing module's "Settled visits"
    settle_tol: float = math.inf

    @classmethod
    def limited(cls, passes: int, max_reps: int) -> Protocol:
        """The default protocol with a user's `passes` and `max_reps` (HwnasError when a pass
        would get fewer than 2 timed calls)."""
        if passes < 1:
            raise HwnasError(f"must be at least 1, got {passes}", field="passes")
        if max_reps < 2 * passes:
            raise HwnasError(
                f"{max_reps} leaves under 2 timed calls per pass; give at least {2 * passes}",
                field="max_reps",
            )
        return cls(passes=passes, max_reps=max_reps, min_reps=min(cls.min_reps, max_reps))


@dataclass(frozen=True)
class Stats:
    """One runner's latency: the median of its timed calls (ms) with their spread; `drift` is
    the raw median over the drift-corrected one (`latency/drift.py`)."""

    median_ms: float
    cv: float
    iqr_ms: float
    n_reps: int
    remeasured: bool = False
    drift: float = 1.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
