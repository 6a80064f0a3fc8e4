"""The export panel: the same export as `hwnas export --candidate ID`, its proof, a download."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from hwnas.app import view_data as data
from hwnas.app.common import db_url
from hwnas.db.session import Database
from hwnas.exceptions import shown
from hwnas.search.output import is_user_error
from hwnas.search.services.export import ExportRequest, ExportResult, export
from hwnas.supernet.convert import PRECISIONS


def export_dir() -> Path:
    """Where the dashboard writes exports: $HWNAS_EXPORT_DIR, else ./exports."""
    d = Path(os.environ.get("HWNAS_EXPORT_DIR", "exports"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def export_panel(db: Database, cid: int) -> None:
    st.subheader("Export to TFLite")
    precision = st.radio("Precision", PRECISIONS, horizontal=True, key=f"prec-{cid}")
    if st.button("Export", key=f"export-{cid}", type="primary"):
        out = export_dir() / f"candidate-{cid}-{precision}.tflite"
        with st.spinner("converting, checking against JAX, measuring…"):
            try:
                req = ExportRequest(str(out), candidate=cid, precision=precision, force=True)
                result = export(db_url(), req)
            except Exception as e:  # a user's error (a missing data folder...): one line
                if not is_user_error(e):
                    raise
                st.error(shown(e, flags=False))
                return
        st.session_state[f"done-{cid}"] = result
    done: ExportResult | None = st.session_state.get(f"done-{cid}")
    if done is not None:
        show_proof(done)
    earlier = data.exports(db, cid)
    if earlier:
        with st.expander(f"{len(earlier)} earlier exports of this candidate"):
            st.dataframe(earlier)


def show_proof(r: ExportResult) -> None:
    p, lat = r.proof, r.proof.latency
    st.success(f"exported {r.path} ({p.bytes:,} bytes, sha256 {p.sha256[:16]}…)")
    a, b, c, d = st.columns(4)
    a.metric("max |logit diff| JAX vs LiteRT", f"{p.max_abs_diff:.2e}")
    b.metric("val acc JAX", f"{p.val_acc_jax:.4f}")
    c.metric("val acc LiteRT", f"{p.val_acc_tflite:.4f}", delta=f"{-p.acc_drop_points:.2f} pts")
    pred, meas = lat.predicted_ms, lat.measured_ms
    d.metric(f"measured on {lat.latency_target}", f"{meas:.4f} ms" if meas else "–",
             delta=f"predicted {pred:.4f} ms" if pred else None, delta_color="off")  # fmt: skip
    fixed = lat.measured_ms_drift_corrected
    if lat.drift and fixed:
        st.caption(f"anchor subnets ran {lat.drift:.2f}x their stored latency: "
                   f"{fixed:.4f} ms with this drift taken out")  # fmt: skip
    st.write("ops: " + ", ".join(p.ops))
    with st.expander("input contract (also in the .json beside the model)"):
        st.json(dict(p.input))
    path = Path(r.path)
    st.download_button("Download .tflite", path.read_bytes(), file_name=path.name,
                       mime="application/octet-stream")  # fmt: skip
