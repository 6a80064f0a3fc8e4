"""The report's Markdown text: a pure function of the report's data, figure names and versions."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import shlex
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.latency.metrics import within
from hwnas.search.report.analysis import specialisation
from hwnas.search.report.report_data import Record, ReportData


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(str(v) for v in r) + " |" for r in rows] + [""]


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.4g}"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def _budgets(budgets: dict) -> str:
    return ", ".join(f"{k} <= {v:g} ms" for k, v in budgets.items()) or "none"


def setup(data: ReportData) -> list[str]:
    s, r, c = data.search, data.run, data.candidates
    cfg = r["config"]
    return [
        "## Setup",
        "",
        f"- Supernet run `{r['name']}` on `{r['dataset']}`: {cfg.get('epochs')} epochs, "
        f"{r['seconds']:.0f} s of training; validation accuracy {r['val_acc_largest']:.4f} "
        f"(largest subnet), {r['val_acc_smallest']:.4f} (smallest).",
        f"- Search `{s['name']}`: objectives accuracy and latency on {', '.join(s['targets'])}; "
        f"budgets {_budgets(s['budgets'])}; sampler `{s['sampler']}`, seed {s['seed']}; "
        f"{len(c)} finished trials, {sum(x['feasible'] for x in c)} feasible, "
        f"{sum(x['pareto'] for x in c)} on the Pareto front.",
        "",
    ]


def fronts(data: ReportData, figs: dict[str, str]) -> list[str]:
    keys = data.latency_keys
    out = ["## Pareto front per target", ""]
    for k in keys:
        out += [f"![front on {k}]({figs[f'pareto:{k}']})", ""]
    front = sorted((c for c in data.candidates if c["pareto"]), key=lambda c: -c["accuracy"])
    both = any(c.get("accuracy_supernet") != c["accuracy"] for c in front)
    acc = ["accuracy predicted / supernet"] if both else ["accuracy"]
    header = ["candidate", *acc, "MACs"] + [f"{k} predicted / measured (ms)" for k in keys]
    rows = [
        [c["candidate"], _accuracy(c, both), f"{c['macs']:,}"]
        + [f"{_pred(c, k)} / {_ms(c['measured_ms'].get(k))}" for k in keys]
        for c in front
    ]
    note = (
        ["\\* extrapolated: the subnet lies outside what the predictor was fitted on (below "
         "its floor, or a feature beyond the measured range); measure it before trusting it.", ""]
        if any(c.get("extrapolated") for c in front) else []
    )  # fmt: skip
    intro = "The front of the search (every objective at once):"
    return [*out, intro, "", *_table(header, rows), *note, *closed_loop(data)]


def _accuracy(c: Record, both: bool) -> str:
    """The accuracy that drove the search, and where a predictor did, the supernet's."""
    if not both:
        return f"{c['accuracy']:.4f}"
    sup = c.get("accuracy_supernet")
    return f"{c['accuracy']:.4f} / {'-' if sup is None else f'{sup:.4f}'}"


def _pred(c: Record, key: str) -> str:
    star = "\\*" if key in (c.get("extrapolated") or ()) else ""
    return f"{_ms(c['predicted_ms'][key])}{star}"


def closed_loop(data: ReportData) -> list[str]:
    """Per round of the search: its predictors and how its measured front agreed."""
    rounds = data.search.get("rounds") or []
    if not rounds:
        return []
    rows = []
    for r in rounds:
        names = ", ".join(
            f"{k}: {v['name'] or 'fitted #' + str(v['id'])}" for k, v in r["predictors"].items()
        )
        agree = r.get("agreement") or {}
        rows.append(
            [r["round"], r["trials"], names] + [_agree(agree.get(k)) for k in data.latency_keys]
        )
    header = ["round", "trials", "predictors"] + [
        f"{k}: front within ±10%" for k in data.latency_keys
    ]
    by_predictor = any(r.get("accuracy_front") for r in rounds)
    if by_predictor:
        header.append("front re-scored with the supernet")
        for row, r in zip(rows, rounds, strict=True):
            row.append(_accuracy_front(r.get("accuracy_front")))
    return [
        "### Closed loop: the front measured after each round",
        "",
        "After each round the front is measured; unless every subnet is within ±10% of its "
        "prediction, the measurements join the predictor's data, it is refitted (named "
        "`SEARCH/rN`), every trial is re-scored and the search goes on. *new*: the front "
        "subnets first measured that round (predicted before they were measured)."
        + (ACCURACY_LOOP if by_predictor else ""),
        "",
        *_table(header, rows),
    ]


ACCURACY_LOOP = (
    " Driven by the accuracy predictor, each round's front is also re-scored with the "
    "supernet (measured or not); while a round brings subnets onto that front that were not "
    "on the previous round's (*new* in its column), the accuracy predictor is refitted with "
    "every re-scored subnet and the search goes on, told the supernet's accuracy where a "
    "trial has one. *evaluated*: the subnets the supernet evaluated after that round."
)


def _accuracy_front(a: Record | None) -> str:
    if not a:
        return "—"
    return f"{a['n']} subnets, {a['new']} new ({a['rescored']} evaluated)"


def _agree(a: Record | None) -> str:
    if not a:
        return "—"
    n, share, worst = a["n"], a["within10_of_predicted"], _pct(a.get("worst_off"))
    text = f"{n * share:.0f} of {n} (worst {worst} off"
    if a.get("fresh"):
        text += f"; new {a['fresh'] * a['fresh_within10']:.0f} of {a['fresh']}"
    return text + ")"


def predictors(data: ReportData, figs: dict[str, str]) -> list[str]:
    out = [
        "## Predicted against measured latency",
        "",
        "Held-out figures of each target's predictors (20% of the measured subnets, never "
        "seen by the fit), the main predictor beside the two baselines. The plots show every "
        "measured subnet.",
        "",
    ]
    for k, t in data.targets.items():
        rows = [
            [
                kind,
                _pct(h.get("within5")),
                _pct(h.get("within10")),
                f"{h.get('mape', float('nan')):.2f}%",
                f"{h.get('kendall', float('nan')):.3f}",
            ]
            for kind, h in t.holdout.items()
        ]
        out += [f"### {k} ({len(t.measured)} measured subnets)", ""]
        out += _table(["predictor", "within ±5%", "within ±10%", "MAPE", "Kendall τ"], rows)
        if f"latency:{k}" in figs:
            out += [f"![predicted against measured on {k}]({figs[f'latency:{k}']})", ""]
    return out + honesty(data)


def honesty(data: ReportData) -> list[str]:
    front = [c for c in data.candidates if c["pareto"] and c["measured_ms"]]
    if not front:
        return ["The front was not measured after the search (`hwnas search --measure`).", ""]
    rows = []
    for k in data.latency_keys:
        m = [(c["measured_ms"][k], c["predicted_ms"][k]) for c in front if k in c["measured_ms"]]
        if not m:
            continue
        meas, pred = np.asarray(m).T
        b = data.search["budgets"].get(k)
        in_budget = _pct(float(np.mean(meas <= b))) if b else "—"
        worst = _pct(float(max((meas / b - 1).max(), 0))) if b else "—"
        rows.append(
            [
                k,
                len(m),
                f"{np.median(meas / pred):.3f}",
                _pct(within(pred, meas, 0.10)),
                in_budget,
                worst,
            ]
        )
    return [
        "### The front measured after the search",
        "",
        *_table(
            [
                "target",
                "candidates",
                "median measured / predicted",
                "within ±10%",
                "within budget",
                "worst overshoot",
            ],
            rows,
        ),
    ]


def samplers(data: ReportData, figs: dict[str, str]) -> list[str]:
    out = ["## Sampler comparison", "", f"![hypervolume]({figs['hypervolume']})", ""]
    eff = data.bench.get("search_efficiency")
    if not eff:
        return [
            *out,
            "Only this search's own curve: the side-by-side comparison of samplers on "
            "the same problem comes from `python -m bench search_efficiency --out DIR` "
            "and `hwnas report ... --bench DIR`.",
            "",
        ]
    reach = eff.get("trials_to_random_final", {})
    rows = [
        [
            s,
            *(f"{t[m]['median']:.3f}" if m in t else "—" for m in ("50", "100", "200", "500")),
            _ms((reach.get(s) or {}).get("median")),
        ]
        for s, t in eff["hypervolume"].items()
    ]
    return (
        out
        + _table(
            [
                "sampler",
                "HV@50",
                "HV@100",
                "HV@200",
                "HV@500",
                "trials to random's HV@500 (median)",
            ],
            rows,
        )
        + _cmd(eff)
    )


def weight_sharing(data: ReportData, figs: dict[str, str]) -> list[str]:
    ws = data.bench.get("weight_sharing")
    out = ["## Weight-sharing check", ""]
    if not ws:
        return [
            *out,
            "Not in this report: `python -m bench weight_sharing --out DIR` trains "
            "subnets from scratch to compare with their inherited accuracy.",
            "",
        ]
    rows = [
        [
            r["key"][:48],
            f"{r['macs']:,}",
            f"{r['inherited']:.4f}",
            f"{r['scratch']:.4f}",
            f"{r['gap_points']:+.2f}",
        ]
        for r in ws["subnets"]
    ]
    return [
        *out,
        f"![weight sharing]({figs['weight_sharing']})",
        "",
        *_table(["subnet", "MACs", "inherited", "from scratch", "gap (points)"], rows),
        f"Mean absolute gap: {ws['mean_abs_gap_points']:.2f} points.",
        "",
        *_cmd(ws),
    ]


def cross_target(data: ReportData) -> list[str]:
    keys = data.latency_keys
    out = ["## Cross-target specialisation", ""]
    if len(keys) < 2:
        return [
            *out,
            "This search has one latency target; search two or more to see what "
            "choosing for the right device buys.",
            "",
        ]
    out += [
        "At each accuracy level of the front, among the front's candidates within the "
        "budgets: the subnet the predictor of one target finds fastest, run on the other "
        "target, beside the subnet chosen for that other target. Both latencies of a row are "
        "measured (marked *) when both subnets were measured, else both predicted. Above 1x, "
        "choosing for the wrong device costs that much latency.",
        "",
    ]
    for a, b in itertools.permutations(keys, 2):
        rows = specialisation(data.candidates, a, b)
        star = lambda v, m: f"{v:.4g}{'*' if m else ''}"  # noqa: E731
        table = [
            [
                f"{r['accuracy']:.4f}",
                r["other"],
                star(r["other_ms"], r["measured"]),
                r["own"],
                star(r["own_ms"], r["measured"]),
                f"{r['slowdown']:.2f}x",
            ]
            for r in rows
        ]
        slow = [r["slowdown"] for r in rows]
        out += [f"### Chosen for {a}, run on {b}: median {np.median(slow):.2f}x, worst "
                f"{max(slow):.2f}x the latency of the subnet chosen for {b}", ""]  # fmt: skip
        out += _table(
            [
                "accuracy ≥",
                f"chosen for {a}",
                f"its {b} ms",
                f"chosen for {b}",
                f"its {b} ms",
                "slowdown",
            ],
            table,
        )
    return out


def exports(data: ReportData) -> list[str]:
    out = ["## Exports", ""]
    if not data.exports:
        return [
            *out,
            "No candidate of this search was exported (`hwnas export --candidate ID`).",
            "",
        ]
    rows = [
        [
            e["candidate"],
            e["precision"],
            f"{e.get('val_acc_jax', 0):.4f}",
            f"{e.get('val_acc_tflite', 0):.4f}",
            _ms(e.get("max_abs_diff")),
            _ms(e.get("predicted_ms")),
            _ms(e.get("measured_ms")),
            f"{e.get('bytes', 0):,}",
        ]
        for e in data.exports
    ]
    return out + _table(
        [
            "candidate",
            "precision",
            "JAX acc",
            "LiteRT acc",
            "max logit diff",
            "predicted ms",
            "measured ms",
            "bytes",
        ],
        rows,
    )


def _flags(stored: str) -> str:
    """Export.precision as the CLI flags that produce it (`int8-int8io`: int8 with --int8-io)."""
    base, _, io = stored.partition("-")
    return f"--precision {base}" + (" --int8-io" if io else "")


def _cmd(bench: dict) -> list[str]:
    return [f"Produced by `{bench['command']}`.", ""] if bench.get("command") else []


def _trial_flags(search: dict, cands: list) -> str:
    """`--trials` (the first round's) and the closed loop's rounds as the search ran them."""
    ends = [r["trials"] for r in search.get("rounds") or []]
    opts = search.get("options") or {}
    if not ends:  # a search of an hwnas before the closed loop
        return f"--trials {len(cands)}"
    if opts.get("measure") is False:
        return f"--trials {ends[0]} --no-measure"
    rounds = opts.get("rounds", len(ends) - 1)
    step = opts.get("round_trials") or (ends[1] - ends[0] if len(ends) > 1 else None)
    return f"--trials {ends[0]} --rounds {rounds}" + (f" --round-trials {step}" if step else "")


def _option_flags(search: dict) -> str:
    """The objectives besides latency, the seed and the stored options as flags."""
    opts = search.get("options") or {}
    flags = [f"--objective {o}" for o in search.get("objectives") or []]
    flags += [f"--seed {search['seed']}"] if search["seed"] is not None else []
    flags += [f"--margin {opts['margin']}"] if "margin" in opts else []
    flags += [f"--initial {opts['initial']}"] if "initial" in opts else []
    if search.get("accuracy_fit"):  # what `auto` chose, so that it is chosen again
        flags.append("--accuracy predictor")
    elif "accuracy" in opts:
        flags.append(f"--accuracy {opts['accuracy']}")
    return " ".join(flags)


def reproduce_commands(data: ReportData, out_dir: str) -> list[str]:
    """The commands that make this search again, from nothing, in a new folder: its database
    (`hwnas.db`, the default) and exports go there; the run's space and training config are
    the files the report wrote beside itself."""
    s, r = data.search, data.run
    folder = Path(out_dir).resolve()
    data_dir = f" --data-dir {shlex.quote(r['data_dir'])}" if r.get("data_dir") else ""
    loader = f" --loader {r['loader']}" if r["dataset"] == "folder" and r.get("loader") else ""
    lines = [
        f"hwnas train --dataset {r['dataset']}{data_dir}{loader} "
        f"--space {shlex.quote(str(folder / 'space.json'))} "
        f"--config {shlex.quote(str(folder / 'train.toml'))} --name {shlex.quote(r['name'])}"
    ]
    run, name = shlex.quote(r["name"]), shlex.quote(s["name"])
    for k, t in data.targets.items():
        measure = f"hwnas measure --run {run} --target {k} --n {len(t.measured)}"
        if "@" in k:  # measured on a device through a job file
            jobs, results = f"jobs-{k.split('@')[1]}.jsonl", f"results-{k.split('@')[1]}.jsonl"
            lines += [
                f"{measure} --jobs-out {jobs}",
                f"# on the device: python -m hwnas.latency.worker {jobs} {results}",
                f"hwnas measure --import {results}",
            ]
        else:
            lines.append(measure)
        lines.append(f"hwnas predictor fit --target {k} --run {run}")
    if fit := s.get("accuracy_fit"):
        lines.append(f"hwnas accuracy fit --run {run} --n {fit['n']} --held-out {fit['held_out']}")
    budgets = " ".join(f"--budget {k}={v!r}" for k, v in s["budgets"].items())
    targets = " ".join(f"--target {k}" for k in s["targets"])
    flags = " ".join(
        f for f in (targets, budgets, _trial_flags(s, data.candidates), _option_flags(s)) if f
    )
    lines.append(f"hwnas search --run {run} {flags} --sampler {s['sampler']} --name {name}")
    by_id = {c["candidate"]: c for c in data.candidates}
    for e in data.exports:
        subnet = json.dumps(by_id[e["candidate"]]["subnet"], separators=(",", ":"))
        lines.append(
            f"hwnas export --run {run} --subnet {shlex.quote(subnet)} "
            f"{_flags(e['precision'])} --out {shlex.quote(Path(e['path']).name)} --force"
        )
    lines += [b["command"] for b in data.bench.values() if isinstance(b, dict) and "command" in b]
    lines.append(f"hwnas report {name} --out report")
    return lines


def reproduce(data: ReportData, versions: dict[str, str], db_url: str, out_dir: str) -> list[str]:
    fp: dict[str, Any] = next((t.fingerprint for t in data.targets.values()), {})
    return (
        [
            "## How to reproduce",
            "",
            f"This search is in `{db_url}`. To make it again from nothing, run these in a new "
            "folder (each command also takes `--db URL`):",
            "",
            "```bash",
            *reproduce_commands(data, out_dir),
            "```",
            "",
            "Versions:",
            "",
        ]
        + [f"- {k}: {v}" for k, v in versions.items()]
        + ([f"- measuring machine: {fp}"] if fp else [])
        + [""]
    )


def markdown(
    data: ReportData, figs: dict[str, str], versions: dict[str, str], db_url: str, out_dir: str
) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        f"# hwnas report: search `{data.search['name']}`",
        "",
        f"Generated {when} by `hwnas report` from the database; nothing here is typed in by hand.",
        "",
    ]
    parts += setup(data) + fronts(data, figs) + predictors(data, figs) + samplers(data, figs)
    parts += weight_sharing(data, figs) + cross_target(data) + exports(data)
    parts += reproduce(data, versions, db_url, out_dir)
    return "\n".join(parts)
