"""The export's latency check: predicted against measured on the tflite target, with the drift
of the machine since the predictor's measurements taken out.

A 50-microsecond model measured twice on a shared machine, hours apart, can differ by 15%
while the predictor's own measurements were all taken in one session. So the exported file is
measured interleaved with a few anchor subnets of the predictor's data (spread over its latency
range). `drift` is the median ratio of their medians now to their stored medians, and
`measured_ms / drift` is the latency in the predictor's session. Both figures are reported.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path

from hwnas.db.models import Run
from hwnas.db.session import Database
from hwnas.latency.jobs import Job
from hwnas.latency.targets import Target
from hwnas.search.output import UserError
from hwnas.search.services.anchors import anchors
from hwnas.search.services.prediction import load_predictor_row
from hwnas.supernet.space import SearchSpace, Subnet

logger = logging.getLogger(__name__)

N_ANCHORS = 4


def latency_target(precision: str, threads: int) -> Target:
    """The tflite target whose predictor applies: fp16 weights run as fp32 under XNNPACK."""
    return Target("tflite", threads, "int8" if precision == "int8" else "fp32")


def latency(db: Database, run: Run, subnet: Subnet, model: bytes, target: Target, measure: bool):
    """Predicted (where a predictor exists) and measured latency on `target`."""
    space = SearchSpace.from_dict(run.space)
    out: dict = {"latency_target": target.key, "predicted_ms": None, "measured_ms": None}
    try:
        p, _ = load_predictor_row(db, target, space_key=space.key)
        if p.space.to_dict() == space.to_dict():
            out["predicted_ms"] = float(p.predict([subnet])[0])
    except UserError:
        logger.info(
            f"export: no {target.key} predictor; `hwnas predictor fit --target {target.key}`"
        )
    if not measure:
        return out
    refs, stored = (
        anchors(db, space, target, [subnet], N_ANCHORS) if out["predicted_ms"] else ([], [])
    )
    stats, drift = measure_model(model, target, subnet, run, refs, stored)
    out["measured_ms"], out["measured_cv"] = stats["median_ms"], stats["cv"]
    if out["predicted_ms"]:
        out["measured_over_predicted"] = out["measured_ms"] / out["predicted_ms"]
    if drift is not None:
        out["drift"] = drift
        out["measured_ms_drift_corrected"] = out["measured_ms"] / drift
        out["corrected_over_predicted"] = out["measured_ms_drift_corrected"] / out["predicted_ms"]
    return out


def measure_model(model: bytes, target: Target, subnet: Subnet, run: Run, refs, stored):
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
