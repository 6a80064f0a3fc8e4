"""Export a search's whole Pareto front to TFLite in fp32 and int8, with every proof.

    python bench/export_front.py --search NAME [--db URL] [--out DIR] [--precisions fp32,int8]

Each Pareto candidate goes through exactly what `hwnas export --candidate ID` does (BN
recalibration, conversion, JAX-vs-LiteRT logits and accuracy on the validation split,
latency measured on the tflite target beside the predictor's). Reported per precision: the
share that converted with no manual step, the worst logit difference, the accuracy drop
(JAX minus LiteRT, points), and the share whose measured latency is within +-10% of the
predicted. Needs a fitted predictor per precision (`hwnas measure --target tflite
--precision int8 ...` then `hwnas predictor fit --target tflite-int8-t1`) for the latency
columns. The last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from sqlalchemy import select

from hwnas.db.models import Candidate
from hwnas.db.session import open_db
from hwnas.latency.metrics import within
from hwnas.search.output import show_logs
from hwnas.search.services.export import ExportRequest, export
from hwnas.search.services.search import find_search


def front_ids(db_url: str | None, search: str) -> list[int]:
    with open_db(db_url, create=False) as db, db.read() as s:
        sid = find_search(s, search).id
        q = select(Candidate.id).where(Candidate.search_id == sid, Candidate.pareto)
        return list(s.scalars(q.order_by(Candidate.id)))


def export_one(db_url, cid: int, precision: str, out: Path) -> dict:
    req = ExportRequest(str(out / f"c{cid}-{precision}.tflite"), candidate=cid,
                        precision=precision, force=True)  # fmt: skip
    try:
        r = export(db_url, req).to_json()
    except Exception as e:  # a failed conversion is a figure here, not a crash
        return {"candidate": cid, "precision": precision, "ok": False, "error": str(e)[:300]}
    keep = ("bytes", "ops", "max_abs_diff", "val_acc_jax", "val_acc_tflite", "acc_drop_points",
            "predicted_ms", "measured_ms", "measured_cv", "sha256")  # fmt: skip
    drift = {k: r[k] for k in ("drift", "measured_ms_drift_corrected") if k in r}
    return {"candidate": cid, "precision": precision, "ok": True} | {k: r[k] for k in keep} | drift


def summarise(rows: list[dict]) -> dict:
    ok = [r for r in rows if r["ok"]]
    both = [r for r in ok if r["predicted_ms"] and r["measured_ms"]]
    pred = np.asarray([r["predicted_ms"] for r in both])
    meas = np.asarray([r["measured_ms"] for r in both])
    ratio = meas / pred if len(both) else np.zeros(0)
    corr = [r for r in both if "measured_ms_drift_corrected" in r]
    fixed_pred = np.asarray([r["predicted_ms"] for r in corr])
    fixed = np.asarray([r["measured_ms_drift_corrected"] for r in corr])
    return {
        "n": len(rows),
        "converted": len(ok) / max(len(rows), 1),
        "max_abs_diff_max": max((r["max_abs_diff"] for r in ok), default=None),
        "acc_drop_points_max": max((r["acc_drop_points"] for r in ok), default=None),
        "acc_drop_points_mean": float(np.mean([r["acc_drop_points"] for r in ok])) if ok else None,
        "n_with_prediction": len(both),
        "latency_within10": within(pred, meas, 0.10) if len(both) else None,
        "measured_over_predicted_median": float(np.median(ratio)) if len(both) else None,
        "n_drift_corrected": len(fixed),
        "corrected_within10": within(fixed_pred, fixed, 0.10) if len(fixed) else None,
    }


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main() -> None:
    show_logs()  # the services' progress on stderr, as the CLI shows it
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--search", required=True)
    parser.add_argument("--db", default=None)
    parser.add_argument("--out", default=None, help="folder for the .tflite files")
    parser.add_argument("--precisions", default="fp32,int8")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="hwnas-front-"))
    out.mkdir(parents=True, exist_ok=True)
    ids = front_ids(args.db, args.search)
    rows = []
    for precision in args.precisions.split(","):
        for cid in ids:
            rows.append(export_one(args.db, cid, precision, out))
            r = rows[-1]
            log(f"{precision} c{cid}: " + (json.dumps({k: r.get(k) for k in (
                "max_abs_diff", "val_acc_jax", "val_acc_tflite", "predicted_ms", "measured_ms")})
                if r["ok"] else r["error"]))  # fmt: skip
    result = {"search": args.search, "front": len(ids), "folder": str(out)}
    result["summary"] = {
        p: summarise([r for r in rows if r["precision"] == p]) for p in args.precisions.split(",")
    }
    result["exports"] = rows
    for p, s in result["summary"].items():
        log(f"{p}: {json.dumps(s)}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
