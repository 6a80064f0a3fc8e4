"""Searches: every search with its targets, budgets, sampler, trials and best feasible accuracy;
refreshes itself while a search runs."""

from __future__ import annotations

import streamlit as st

from hwnas.app import view_data as data
from hwnas.app.common import database, first_steps
from hwnas.db.session import Database

st.title("Searches")
db = database()


@st.fragment(run_every=3)
def table(db: Database) -> None:
    df = data.searches(db)
    if df.empty:
        first_steps("searches")
        return
    running = int((df["status"] == "running").sum() + (df["running"] > 0).sum())
    st.caption(f"{len(df)} searches; {running} running (this table refreshes every 3 s)")
    acc = st.column_config.NumberColumn(format="%.4f")
    st.dataframe(
        df, hide_index=True,
        column_config={"best_feasible_accuracy": acc},
    )  # fmt: skip


if db is not None:
    table(db)
