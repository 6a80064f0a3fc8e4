"""Supernet runs: each training run, its curves and its checkpoints."""

from __future__ import annotations

import streamlit as st

from hwnas.app import charts
from hwnas.app import view_data as data
from hwnas.app.common import database, first_steps

st.title("Supernet runs")
db = database()
if db is not None:
    runs = data.runs(db)
    if runs.empty:
        first_steps("training runs")
    else:
        st.dataframe(runs, hide_index=True)
        name = st.selectbox("Run", list(runs["run"]))
        ep = data.epochs(db, name)
        if ep.empty:
            st.info(f"run {name} has no finished epoch yet")
        else:
            st.plotly_chart(charts.training_curves(ep))
        st.subheader("Checkpoints")
        st.dataframe(data.checkpoints(db, name), hide_index=True)
