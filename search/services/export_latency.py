"""The export's latency check: predicted against measured on the tflite target, with the drift
of the machine since the predictor's measurements taken out.

A 50-microsecond model measured twice on a shared machine, hours apart, can differ by 15%
while the predictor's own measurements were all taken in one session. So the exported file is
measured interleaved with a few anchor subnets of the predictor's data (those nearest to it in
MACs: `search/services/anchors.py`). `drift` is the median ratio of their medians now to their
stored medians, and `measured_ms / drift` is the latency in the predictor's session. Both
figures are reported.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwnas.db.models import Run
from hwnas.db.session import Database
from hwnas.latency.drift import FEW_ANCHORS
from hwnas.latency.jobs import Job
from hwnas.latency.targets import Target
from hwnas.search.output import UserError
from hwnas.search.result import Result
from hwnas.search.services.anchors import anchors
from hwnas.search.services.prediction import load_predictor_row
from hwnas.search.services.target_args import import_hint
from hwnas.supernet.space import SearchSpace, Subnet

logger = logging.getLogger(__name__)


def latency_target(precision: str, threads: int) -> Target:
    """The tflite target whose predictor applies: fp16 weights run as fp32 under XNNPACK."""
    return Target("tflite", threads, "int8" if precision == "int8" else "fp32")


@dataclass(frozen=True)
class LatencyCheck(Result):
    """The export's latency on `latency_target`: predicted (where a predictor of the run's space
    exists) and measured (unless the export was told not to); with anchors, the machine's drift
    since the predictor's measurements and the measurement with it taken out. Keys of figures
    that were not taken are left out of the JSON (predicted and measured are null instead)."""

    latency_target: str
    predicted_ms: float | None = None
    measured_ms: float | None = None
    measured_cv: float | None = None
    measured_over_predicted: float | None = None
    drift: float | None = None
    measured_ms_drift_corrected: float | None = None
    corrected_over_predicted: float | None = None

    def to_json(self) -> dict[str, Any]:
        always = ("latency_target", "predicted_ms", "measured_ms")
        return {k: v for k, v in super().to_json().items() if k in always or v is not None}


def predicted_ms(db: Database, space: SearchSpace, subnet: Subnet, target: Target) -> float | None:
    """The target's predictor's latency of `subnet` (None: no predictor of this space)."""
    try:
        p, _ = load_predictor_row(db, target, space_key=space.key)
    except UserError:
        logger.info(
            f"export: no {target.key} predictor; `hwnas predictor fit --target {target.key}`"
        )
        return None
    return float(p.predict([subnet])[0]) if p.space.to_dict() == space.to_dict() else None


def elsewhere(predicted: dict[str, float], space_key: str) -> dict[str, float]:
    """`predicted` (a candidate's latency on its search's targets), saying how to check the
    ones this machine cannot measure: on their device, then imported."""
    for key in predicted:
        target = Target.parse(key)
        if not target.measurable or target.device:
            logger.info(f"export: {key} is measured elsewhere: measure the file there and "
                        f"import it ({import_hint(key, space_key)})")  # fmt: skip
    return predicted


def latency(
    db: Database, run: Run, subnet: Subnet, model: bytes, target: Target, measure: bool
) -> LatencyCheck:
    """Predicted (where a predictor exists) and measured latency on `target`."""
    space = SearchSpace.from_dict(run.space)
    predicted = predicted_ms(db, space, subnet, target)
    if not measure:
        return LatencyCheck(target.key, predicted)
    refs, stored = anchors(db, space, target, [subnet], FEW_ANCHORS) if predicted else ([], [])
    stats, drift = measure_model(model, target, subnet, run, refs, stored)
    measured = float(stats["median_ms"])
    corrected = None if drift is None else measured / drift
    return LatencyCheck(
        target.key,
        predicted,
        measured,
        stats["cv"],
        measured / predicted if predicted else None,
        drift,
        corrected,
        corrected / predicted if corrected is not None and predicted else None,
    )


def measure_model(
    model: bytes, target: Target, subnet: Subnet, run: Run, refs: list[Subnet], stored: list[float]
) -> tuple[dict[str, Any], float | None]:
    """The exported file measured under `hwnas measure`'s protocol, interleaved with the
    anchors `refs` (subnets of the predictor's data nearest to it in MACs, their `stored`
    medians as the baseline); its raw stats and the drift (None without anchors)."""
    from hwnas.latency.worker import measure_jobs
    from hwnas.search.services.measuring import anchor_jobs
    from hwnas.search.services.model_source import RunContext

    logger.info(
        f"export: measuring on {target.key}" + (f" with {len(refs)} anchors" if refs else "")
    )
    digest = hashlib.sha256(model).hexdigest()
    with tempfile.TemporaryDirectory(prefix="hwnas-export-") as tmp:
        (Path(tmp) / "m").mkdir()
        (Path(tmp) / "m" / "model.tflite").write_bytes(model)
        payload = {"type": "tflite", "path": "m/model.tflite", "sha256": digest}
        job = Job(digest[:32], target, subnet.key, subnet.to_dict(), "subnet", payload)
        (Path(tmp) / "models").mkdir()
        ref_jobs, baseline = anchor_jobs(
            RunContext(run), target, refs, stored, Path(tmp) / "models"
        )
        stats = measure_jobs([job], Path(tmp), refs=ref_jobs, baseline=baseline)[0].stats
    if not refs:
        return stats, None
    raw = stats | {"median_ms": stats["median_ms"] * stats["drift"]}  # undo the rescaling
    return raw, stats["drift"]
