"""A tour of hwnas's Python API, no CLI: train the digits supernet for one epoch, measure the
`tflite` target on 20 subnets, fit its latency predictor, search 50 trials under a latency
budget and export the most accurate subnet that meets it, as int8 TFLite with its proof.

    python docs/api_tour.py [FOLDER]     # everything goes to FOLDER (default: hwnas-tour)

tests/test_api_tour.py runs `tour` on a tiny space (same calls, smaller model).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import hwnas

if TYPE_CHECKING:
    from hwnas.search.services.export import ExportResult


def tour(folder: Path, space: str = "digits") -> ExportResult:
    folder.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{folder.resolve() / 'hwnas.db'}"

    run = hwnas.train(
        "digits", space=space, epochs=1, name="tour", runs_dir=folder / "runs", db=db
    )
    print(f"trained {run.run}: largest subnet {run.val_acc_largest:.3f} on validation")

    measured = hwnas.measure("tflite", run=run.run, n=20, db=db)
    fitted = hwnas.fit_predictor(measured.target, run=run.run, db=db)
    print(f"{fitted.target}: {fitted.holdout.within10:.0%} of held-out subnets within 10%")

    budget = {measured.target: measured.median_ms}  # half the random subnets fit
    config = hwnas.SearchConfig(trials=50, rounds=0, name="tour", quiet=True)
    found = hwnas.search(run.run, [measured.target], budgets=budget, config=config, db=db)
    best = max(found.pareto, key=lambda c: c.accuracy)  # the front meets the budget
    print(f"{len(found.pareto)} on the front; best within {budget}: {best.key}")
    again = hwnas.predict_many(measured.target, [c.subnet for c in found.pareto], db=db)
    stored = [c.latency_ms[measured.target] for c in found.pareto]  # by the same predictor
    assert all(abs(a / b - 1) < 1e-9 for a, b in zip(again, stored, strict=True))

    exported = hwnas.export(
        folder / "best-int8.tflite", candidate=best.candidate, precision="int8", force=True,
        db=db,
    )  # fmt: skip
    proof = exported.proof
    print(f"{exported.path}: {proof.bytes} bytes, LiteRT accuracy {proof.val_acc_tflite:.3f}")
    return exported


if __name__ == "__main__":
    tour(Path(sys.argv[1] if len(sys.argv) > 1 else "hwnas-tour"))
