"""The report's PNG figures (matplotlib, no display): each a function of the report's data."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from hwnas.search.report.analysis import front_of, hv_curve
from hwnas.search.report.report_data import Record, ReportData, TargetReport

KIND_LABEL = {"main": "main predictor", "macs": "MACs baseline", "lut": "lookup-table baseline"}


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def pareto_png(data: ReportData, key: str, path: Path) -> str:
    cands = data.candidates
    fig, ax = plt.subplots(figsize=(7, 4.5))
    # label, feasible or not, marker, colour, size, alpha
    groups = (("over budget", False, "x", "0.6", 14, 1.0),
              ("feasible", True, "o", "tab:blue", 10, 0.5))  # fmt: skip
    for label, ok, marker, color, size, alpha in groups:
        part = [c for c in cands if bool(c["feasible"]) == ok]
        if part:
            xs, ys = [c["predicted_ms"][key] for c in part], [c["accuracy"] for c in part]
            ax.scatter(xs, ys, label=label, marker=marker, color=color, s=size, alpha=alpha)
    front = front_of(cands, key)
    if front:
        ax.step(
            [c["predicted_ms"][key] for c in front],
            [c["accuracy"] for c in front],
            where="post",
            color="tab:red",
            marker="D",
            ms=5,
            label=f"front on {key}",
        )
    meas = [c for c in cands if key in c["measured_ms"]]
    if meas:
        ax.scatter(
            [c["measured_ms"][key] for c in meas],
            [c["accuracy"] for c in meas],
            facecolors="none",
            edgecolors="k",
            s=40,
            label="front, measured",
        )
    if key in data.search["budgets"]:
        ax.axvline(data.search["budgets"][key], color="red", ls="--", label="budget")
    ax.set(
        xlabel=f"latency on {key} (ms)",
        ylabel="validation accuracy",
        title=f"search {data.search['name']}: accuracy against latency on {key}",
    )
    ax.legend(fontsize=8)
    return _save(fig, path)


def latency_png(t: TargetReport, path: Path) -> str:
    kinds = [k for k in ("main", "macs", "lut") if k in t.predicted]
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 4), squeeze=False)
    lo, hi = float(t.measured.min()), float(t.measured.max())
    for ax, kind in zip(axes[0], kinds, strict=True):
        xs = np.geomspace(lo, hi, 50)
        ax.fill_between(xs, xs * 0.9, xs * 1.1, color="0.85", label="±10%")
        ax.plot(xs, xs, color="k", lw=1)
        ax.scatter(t.measured, t.predicted[kind], s=8, alpha=0.6)
        h = t.holdout.get(kind, {})
        sub = (
            f"held-out: {100 * h['within10']:.0f}% within 10%, τ {h['kendall']:.2f}"
            if "within10" in h
            else ""
        )
        ax.set(xlabel="measured (ms)", ylabel="predicted (ms)", xscale="log", yscale="log",
               title=f"{KIND_LABEL[kind]}\n{sub}")  # fmt: skip
        ax.title.set_fontsize(9)
    fig.suptitle(f"{t.key}: predicted against measured, {len(t.measured)} subnets", fontsize=10)
    return _save(fig, path)


def hv_png(data: ReportData, path: Path) -> str:
    """Left: this search, per target (its own reference box). Right, when the bench ran: every
    sampler on the same problem, medians over seeds (the bench's box): levels differ between
    the panels, shapes compare."""
    eff = data.bench.get("search_efficiency", {}).get("hypervolume", {})
    fig, axes = plt.subplots(1, 2 if eff else 1, figsize=(11 if eff else 6.5, 4), squeeze=False)
    ax = axes[0][0]
    for key in data.latency_keys:
        curve = hv_curve(data.candidates, key)
        ax.plot(curve["trials"], curve["hypervolume"], label=key)
    ax.set(xscale="log", xlabel="trials", ylabel="normalised hypervolume",
           title=f"this search ({data.search['sampler']}), accuracy x latency")  # fmt: skip
    ax.legend(fontsize=8)
    if eff:
        ax = axes[0][1]
        for sampler, table in eff.items():
            marks = sorted(int(k) for k in table if k.isdigit())
            ax.plot(marks, [table[str(m)]["median"] for m in marks], marker="o", label=sampler)
        ax.set(xscale="log", xlabel="trials", ylabel="normalised hypervolume",
               title="samplers on the same problem (bench, median over seeds)")  # fmt: skip
        ax.legend(fontsize=8)
    return _save(fig, path)


def weight_sharing_png(ws: Record, path: Path) -> str:
    rows = ws["subnets"]
    fig, ax = plt.subplots(figsize=(5, 4.5))
    x, y = [r["scratch"] for r in rows], [r["inherited"] for r in rows]
    lo, hi = min(x + y), max(x + y)
    ax.plot([lo, hi], [lo, hi], color="k", lw=1)
    ax.scatter(x, y)
    ax.set(
        xlabel="trained from scratch",
        ylabel="inherited from the supernet",
        title="validation accuracy: weight sharing check",
    )
    return _save(fig, path)


def draw_all(data: ReportData, out: Path) -> dict[str, str]:
    """Every figure the data allows; name -> file name inside `out`."""
    figs = {}
    for i, key in enumerate(data.latency_keys):
        figs[f"pareto:{key}"] = pareto_png(data, key, out / f"pareto_{i}.png")
        if key in data.targets and len(data.targets[key].measured) > 1:
            figs[f"latency:{key}"] = latency_png(data.targets[key], out / f"latency_{i}.png")
    figs["hypervolume"] = hv_png(data, out / "hypervolume.png")
    if "weight_sharing" in data.bench:
        figs["weight_sharing"] = weight_sharing_png(
            data.bench["weight_sharing"], out / "weight_sharing.png"
        )
    return figs
