"""The Pareto figure on frames whose answer is known: which points go in which trace, and
WebGL for the many dominated points of a large search."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hwnas.app.charts import WEBGL_ABOVE, pareto_figure


def frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "candidate": np.arange(n), "search": "s", "key": [f"k{i}" for i in range(n)],
        "accuracy": rng.uniform(0.9, 1, n), "predicted:t": rng.uniform(0.1, 1, n),
        "feasible": np.arange(n) % 4 > 0, "pareto": np.arange(n) % 50 == 1,
    })  # fmt: skip


def test_kinds_split_into_traces_and_budget_line():
    fig = pareto_figure(frame(200), "t", {"t": 0.5})
    sizes = {tr.name: len(tr.x) for tr in fig.data}
    assert sizes == {"s: Pareto": 4, "s: feasible": 146, "s: infeasible (over budget)": 50}
    assert {tr.type for tr in fig.data} == {"scatter"}
    assert fig.layout.shapes[0].x0 == 0.5


def test_many_points_use_webgl_but_the_front_stays_svg():
    fig = pareto_figure(frame(WEBGL_ABOVE + 500), "t", {})
    types = {tr.name: tr.type for tr in fig.data}
    assert types["s: Pareto"] == "scatter"
    assert types["s: feasible"] == types["s: infeasible (over budget)"] == "scattergl"
    assert sum(len(tr.x) for tr in fig.data) == WEBGL_ABOVE + 500
    front = next(tr for tr in fig.data if tr.name == "s: Pareto")
    assert list(front.x) == sorted(front.x)  # the front is drawn as a staircase, left to right


def test_targets_overlay_with_their_own_budget_lines():
    df = frame(200)
    df["predicted:u"] = df["predicted:t"] * 3
    fig = pareto_figure(df, ["t", "u"], {"t": 0.5, "u": 2.0})
    sizes = {tr.name: len(tr.x) for tr in fig.data}
    assert sizes["s on t: Pareto"] == sizes["s on u: Pareto"] == 4
    assert sum(sizes.values()) == 400
    assert sorted(sh.x0 for sh in fig.layout.shapes) == [0.5, 2.0]
    u = next(tr for tr in fig.data if tr.name == "s on u: feasible")
    assert max(u.x) > 1.0  # drawn at u's latencies, not t's


def test_a_predictor_driven_front_is_drawn_at_its_supernet_accuracy():
    df = frame(200)
    df["accuracy_supernet"] = np.where(df["pareto"], df["accuracy"] - 0.01, np.nan)
    front = next(tr for tr in pareto_figure(df, "t", {}).data if tr.name.startswith("s: Pareto"))
    assert front.name == "s: Pareto (supernet accuracy)"
    on = df[df["pareto"]].sort_values("predicted:t")
    assert list(front.y) == list(on["accuracy_supernet"])
    # a supernet-driven search's figures are the same: nothing changes
    df["accuracy_supernet"] = df["accuracy"]
    names = {tr.name for tr in pareto_figure(df, "t", {}).data}
    assert "s: Pareto" in names
