"""Latency: per target, measured against predicted latency (with the +-10% band), the error
histogram, the predictor's held-out figures beside the baselines, and the measurement noise."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from hwnas.app import charts
from hwnas.app import view_data as data
from hwnas.app.common import database, first_steps
from hwnas.db.session import Database
from hwnas.latency.targets import Target
from hwnas.search.output import UserError
from hwnas.search.services.prediction import load_predictor
from hwnas.supernet.space import SpaceError

st.title("Latency")
db = database()


def with_predictions(db: Database, meas: pd.DataFrame, target: str) -> pd.DataFrame | None:
    try:
        p = load_predictor(db, Target.parse(target))
    except UserError:
        return None
    subnets, keep = [], []
    for i, d in enumerate(meas["subnet"]):
        try:
            subnets.append(p.space.subnet_from_dict(d))
            keep.append(i)
        except SpaceError:  # measured on another run's space
            continue
    out = meas.iloc[keep].copy()
    out["predicted"] = p.predict(subnets) if subnets else []
    return out


def page(db: Database) -> None:
    keys = data.targets(db)
    if not keys:
        first_steps("latency measurements")
        return
    target = st.selectbox("Target", keys)
    meas = data.measurements(db, target)
    if meas.empty:
        st.info(f"no subnet measured on {target} yet: `hwnas measure --target {target} ...`")
        return
    st.caption(f"{len(meas)} measurements; median per-call CV {meas['cv'].median():.1%}")
    figures = data.predictors(db, target)
    if figures:
        st.subheader("Predictors on held-out subnets")
        st.dataframe(pd.DataFrame(figures).T)
    both = with_predictions(db, meas, target)
    if both is None:
        st.info(f"no predictor for {target}: `hwnas predictor fit --target {target}`")
    else:
        st.plotly_chart(charts.predicted_vs_measured(both, target))
        st.plotly_chart(charts.error_histogram(both))
    n = data.noise(meas)
    st.subheader("Measurement noise")
    st.write(n if n else "no subnet was measured twice on this target")


if db is not None:
    page(db)
