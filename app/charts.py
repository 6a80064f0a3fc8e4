"""Plotly figures as pure functions of frames (no Streamlit here, so tests can build them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

WEBGL_ABOVE = 1_000  # points in a figure above which dominated points are drawn with WebGL

Style = tuple[str, dict[str, Any]]  # a trace's label and marker

KIND_STYLE: dict[str, Style] = {  # point kind -> (label, marker)
    "pareto": ("Pareto", {"size": 11, "symbol": "diamond", "line": {"width": 1}}),
    "feasible": ("feasible", {"size": 6, "opacity": 0.6}),
    "infeasible": ("infeasible (over budget)", {"size": 6, "symbol": "x", "opacity": 0.5}),
}


def point_kinds(df: pd.DataFrame) -> pd.Series:
    """ "pareto", "feasible" or "infeasible" per row."""
    feasible = np.where(df["feasible"].astype(bool), "feasible", "infeasible")
    return pd.Series(np.where(df["pareto"].astype(bool), "pareto", feasible), index=df.index)


def pareto_figure(
    df: pd.DataFrame, targets: str | Sequence[str], budgets: dict[str, float]
) -> go.Figure:
    """Accuracy against predicted latency on each of `targets` (several overlay one device's
    latencies of the same subnets on another's): one trace per target, search and point kind
    (Pareto, feasible, infeasible), each target's budget as a vertical line; hover shows the
    subnet."""
    targets = [targets] if isinstance(targets, str) else list(targets)
    parts = {t: _rows_with(df, f"predicted:{t}") for t in targets}
    gl = sum(len(p) for p in parts.values()) > WEBGL_ABOVE
    fig = go.Figure()
    for target, data in parts.items():
        prefix = "" if len(targets) == 1 else f" on {target}"
        for trace in _target_traces(data, f"predicted:{target}", prefix, gl):
            fig.add_trace(trace)
        if target in budgets:
            fig.add_vline(x=budgets[target], line_dash="dash", line_color="red",
                          annotation_text=f"{target} budget {budgets[target]:g} ms")  # fmt: skip
    axis = targets[0] if len(targets) == 1 else ", ".join(targets)
    fig.update_layout(xaxis_title=f"predicted latency on {axis} (ms)",
                      yaxis_title="validation accuracy", clickmode="event+select",
                      legend_title="search: points", height=520)  # fmt: skip
    return fig


def _rows_with(df: pd.DataFrame, col: str) -> pd.DataFrame:
    return df[df[col].notna()] if col in df else df.iloc[0:0]


EXTRAPOLATED: Style = ("extrapolated prediction", {"size": 16, "symbol": "circle-open",
                                           "line": {"width": 2}, "color": "orange"})  # fmt: skip


def extrapolated_on(df: pd.DataFrame, target: str) -> pd.Series:
    """Rows whose prediction on `target` left the predictor's fitted range."""
    if "extrapolated" not in df:
        return pd.Series(False, index=df.index)
    return df["extrapolated"].fillna("").map(lambda s: target in s.split(", "))


def _target_traces(data: pd.DataFrame, col: str, prefix: str, gl: bool) -> list:
    kinds = point_kinds(data)
    out = extrapolated_on(data, col.split(":", 1)[1])
    traces = []
    for search in sorted(data["search"].unique()) if len(data) else []:
        for kind, (label, marker) in KIND_STYLE.items():
            part = data[(data["search"] == search) & (kinds == kind)]
            if part.empty:
                continue
            front = kind == "pareto"
            part = part.sort_values(col) if front else part
            name = f"{search}{prefix}: {label}"
            if front and _rescored(part):  # a predictor-driven search's front
                part = part.assign(accuracy=part["accuracy_supernet"].fillna(part["accuracy"]))
                name += " (supernet accuracy)"
            traces.append(_points(part, col, name, marker, front, gl and not front))
        part = data[(data["search"] == search) & out]
        if not part.empty:  # a ring around each point whose latency is extrapolated
            label, marker = EXTRAPOLATED
            traces.append(_points(part, col, f"{search}{prefix}: {label}", marker, False, gl))
    return traces


def _rescored(part: pd.DataFrame) -> bool:
    """Whether these points' supernet accuracy differs from the one that drove the search."""
    if "accuracy_supernet" not in part:
        return False
    sup = part["accuracy_supernet"]
    return bool((sup.isna() | (sup != part["accuracy"])).any())


def _points(part: pd.DataFrame, col: str, name: str, marker: dict, line: bool, gl: bool):
    """One trace; `gl` draws it with WebGL (SVG takes seconds for thousands of points)."""
    return (go.Scattergl if gl else go.Scatter)(
        x=part[col], y=part["accuracy"], name=name, mode="lines+markers" if line else "markers",
        marker=marker, line={"shape": "hv"} if line else None,
        customdata=part["candidate"].to_numpy(),  # an integer array travels as binary
        text=part["key"],
        hovertemplate="candidate %{customdata}<br>%{text}<br>"
        "accuracy %{y:.4f}<br>%{x:.4f} ms<extra>%{fullData.name}</extra>",
    )  # fmt: skip


def predicted_vs_measured(df: pd.DataFrame, target: str) -> go.Figure:
    """Measured against predicted latency with the +-10% band."""
    fig = go.Figure()
    if df.empty:
        return fig
    lo, hi = (
        float(df[["predicted", "median_ms"]].min().min()),
        float(df[["predicted", "median_ms"]].max().max()),
    )
    xs = [lo, hi]
    fig.add_trace(go.Scatter(x=xs, y=[v * 1.1 for v in xs], line={"dash": "dot", "color": "grey"},
                             name="+10%"))  # fmt: skip
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=[v * 0.9 for v in xs],
            line={"dash": "dot", "color": "grey"},
            name="-10%",
            fill="tonexty",
            fillcolor="rgba(128,128,128,0.1)",
        )
    )
    fig.add_trace(go.Scatter(x=xs, y=xs, line={"color": "black"}, name="measured = predicted"))
    fig.add_trace(
        go.Scatter(
            x=df["predicted"],
            y=df["median_ms"],
            mode="markers",
            name="subnets",
            text=df["key"],
            hovertemplate="%{text}<br>predicted %{x:.4f}<br>measured %{y:.4f}",
        )
    )
    fig.update_layout(xaxis_title=f"predicted on {target} (ms)", yaxis_title="measured (ms)",
                      height=480)  # fmt: skip
    return fig


def error_histogram(df: pd.DataFrame) -> go.Figure:
    err = 100 * (df["predicted"] / df["median_ms"] - 1) if not df.empty else []
    fig = go.Figure(go.Histogram(x=err, nbinsx=40, name="error"))
    fig.update_layout(xaxis_title="prediction error (%)", yaxis_title="subnets", height=320)
    return fig


def training_curves(ep: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for col in [c for c in ep.columns if c not in ("epoch", "step")]:
        if pd.api.types.is_numeric_dtype(ep[col]):
            fig.add_trace(go.Scatter(x=ep["epoch"], y=ep[col], name=col, mode="lines+markers"))
    fig.update_layout(xaxis_title="epoch", height=400)
    return fig
