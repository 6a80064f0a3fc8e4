"""What a report is written from: the search, its run, candidates, targets and exports, as
`search/services/report.py` gathers them from the database and the bench's JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Record = dict[str, Any]  # a candidate, an export or a setting as the report's text reads it


@dataclass(frozen=True)
class TargetReport:
    """One latency target: its measured subnets, every predictor's predictions of them and
    held-out figures, and the machine that measured it."""

    key: str
    measured: np.ndarray
    predicted: dict[str, np.ndarray]
    holdout: dict[str, Record]
    fingerprint: Record


@dataclass(frozen=True)
class ReportData:
    """What the report is written from: the search's settings and rounds, its run, its
    candidates (trial order), its targets' measurements and predictors, its exports, and the
    bench's JSON by bench name."""

    search: Record
    run: Record
    candidates: list[Record]
    targets: dict[str, TargetReport]
    exports: list[Record]
    bench: Record = field(default_factory=dict)

    @property
    def latency_keys(self) -> list[str]:
        return [k for k in self.search["targets"] if k in self.targets]
