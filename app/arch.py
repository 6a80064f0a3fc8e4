"""A subnet drawn stage by stage: one column per layer, kernel and expand ratio written in."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go


def layers_table(subnet: dict) -> pd.DataFrame:
    """One row per active layer: stage, layer, kernel, expand (slots past a depth skipped)."""
    depths, ks, es = subnet["depths"], subnet["kernels"], subnet["expands"]
    m = len(ks) // len(depths)
    rows = [
        {"stage": s + 1, "layer": j + 1, "kernel": ks[s * m + j], "expand": es[s * m + j]}
        for s, d in enumerate(depths)
        for j in range(d)
    ]
    return pd.DataFrame(rows)


def arch_figure(subnet: dict) -> go.Figure:
    """Blocks left to right; height = expand ratio, colour = kernel size."""
    t = layers_table(subnet)
    labels = [f"s{r.stage}.{r.layer}" for r in t.itertuples()]
    fig = go.Figure(
        go.Bar(
            x=labels, y=t["expand"], marker={"color": t["kernel"], "colorscale": "Viridis",
                                             "colorbar": {"title": "kernel"}},
            text=[f"k{k} e{e}" for k, e in zip(t["kernel"], t["expand"], strict=True)],
            textposition="inside", hovertemplate="%{x}: %{text}<extra></extra>",
        )
    )  # fmt: skip
    fig.update_layout(
        title=f"input {subnet['resolution']} px, depths {subnet['depths']}",
        xaxis_title="stage.layer",
        yaxis_title="expand ratio",
        height=300,
    )
    return fig
