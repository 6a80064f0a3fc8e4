"""Pareto explorer: accuracy against latency, searches and targets overlaid; a selected
point shows its architecture, costs and latencies, and exports to TFLite as the CLI does."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from hwnas.app import charts
from hwnas.app import view_data as data
from hwnas.app.arch import arch_figure, layers_table
from hwnas.app.common import database, first_steps
from hwnas.app.exporting import export_panel
from hwnas.db.session import Database

st.title("Pareto explorer")
db = database()


@st.cache_data(show_spinner=False, max_entries=8)
def cached_candidates(
    _db: Database, url: str, names: tuple[str, ...], version: tuple[Any, ...]
) -> pd.DataFrame:
    """The candidates frame, shared by every session until `version` says they changed (the
    database is named by `url`: `_db`, unhashed, is how it is read)."""
    return data.candidates(_db, list(names))


Picked = tuple[list[str], pd.DataFrame, list[str]]


def choose(db: Database, searches: pd.DataFrame) -> Picked | None:
    names = list(searches["search"])
    chosen = st.multiselect("Searches", names, default=names[-1:])
    if not chosen:
        st.info("choose at least one search")
        return None
    version = data.candidates_version(db, chosen)
    cands = cached_candidates(db, db.url, tuple(chosen), version)
    if cands.empty:
        st.info("these searches have no finished trial yet")
        return None
    tcols = sorted(c.split(":", 1)[1] for c in cands.columns if c.startswith("predicted:"))
    targets = st.multiselect("Targets", tcols, default=tcols[:1])
    if not targets:
        st.info("choose at least one target")
        return None
    return chosen, cands, targets


def selected_candidate(event, cands: pd.DataFrame) -> int | None:
    points = event.selection.points if event else []
    if points:
        cid = points[0]["customdata"]
        return int(cid[0] if isinstance(cid, list) else cid)
    front = cands[cands["pareto"]]
    options = list((front if len(front) else cands)["candidate"])
    pick = st.selectbox("…or pick a candidate", options, index=None,
                        placeholder="click a point or pick a candidate id")  # fmt: skip
    return None if pick is None else int(pick)


def details(db: Database, row: pd.Series) -> None:
    st.subheader(f"Candidate {row['candidate']} ({row['search']}, trial {row['trial']})")
    sup = row.get("accuracy_supernet")
    predicted = pd.isna(sup) or sup != row["accuracy"]  # the search ran on a predictor
    a, b, c, d = st.columns(4)
    label = "accuracy (predicted)" if predicted else "validation accuracy"
    a.metric(label, f"{row['accuracy']:.4f}")
    b.metric(
        "supernet accuracy", "-" if pd.isna(sup) else f"{sup:.4f}",
        help="BN recalibrated, validation split; a predictor-driven search evaluates its front",
    )  # fmt: skip
    c.metric("params", f"{row['params']:,}")
    d.metric("MACs", f"{row['macs']:,}")
    lat: dict[str, dict[str, float]] = {k.split(":", 1)[1]: {} for k in row.index if ":" in k}
    for k, v in row.items():
        if ":" in k and pd.notna(v):
            kind, target = k.split(":", 1)
            lat[target][f"{kind}_ms"] = v
    st.dataframe(pd.DataFrame(lat).T, width="content")
    if row.get("extrapolated"):
        st.warning(
            f"Predicted latency on {row['extrapolated']} is extrapolated: this subnet lies "
            "outside what the predictor was fitted on (below its floor, or a feature beyond "
            "the measured subnets). Measure it before trusting the figure; the search's next "
            "round measures such subnets first."
        )
    subnet = data.candidate_subnet(db, int(row["candidate"]))
    st.plotly_chart(arch_figure(subnet))
    st.dataframe(layers_table(subnet), hide_index=True, width="content")
    st.code(row["key"], language=None)


def page(db: Database) -> None:
    searches = data.searches(db)
    if searches.empty:
        first_steps("searches")
        return
    picked = choose(db, searches)
    if picked is None:
        return
    chosen, cands, targets = picked
    budgets = {}
    for b in data.search_budgets(db, chosen).values():
        budgets.update(b)
    fig = charts.pareto_figure(cands, targets, budgets)
    event = st.plotly_chart(fig, key="pareto", on_select="rerun", selection_mode="points")
    shown = cands[cands[[f"predicted:{t}" for t in targets]].notna().any(axis=1)]
    st.caption(f"{len(shown)} candidates, {int(shown['pareto'].sum())} on the Pareto fronts")
    cid = selected_candidate(event, cands)
    if cid is None:
        return
    row = cands[cands["candidate"] == cid].iloc[0]
    details(db, row)
    export_panel(db, cid)


if db is not None:
    page(db)
