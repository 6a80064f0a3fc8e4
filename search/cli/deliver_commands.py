"""Commands that hand results over: `hwnas export`, `dashboard`, `report`, `demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hwnas import api
from hwnas.search.cli.app import app
from hwnas.search.cli.options import DbOpt, JsonOpt, flags_named
from hwnas.search.output import UserError, emit
from hwnas.search.search_config import DemoConfig


@app.command()
def export(
    out: Annotated[
        str, typer.Option("--out", metavar="FILE.tflite", help="The .tflite file to write.")
    ],
    candidate: Annotated[
        int | None,
        typer.Option(metavar="ID", help="A search candidate (ids: `hwnas pareto SEARCH`)."),
    ] = None,
    run: Annotated[
        str | None, typer.Option(help="A finished run, with --subnet (instead of --candidate).")
    ] = None,
    subnet: Annotated[
        str | None, typer.Option("--subnet", metavar="JSON", help="The subnet, with --run.")
    ] = None,
    precision: Annotated[
        str, typer.Option(help="fp32, fp16 (half-size weights) or int8 (full integer).")
    ] = "fp32",
    int8_io: Annotated[
        bool, typer.Option("--int8-io", help="int8: int8 input and output tensors too.")
    ] = False,
    threads: Annotated[int, typer.Option(help="LiteRT threads for the latency check.")] = 1,
    measure: Annotated[
        bool, typer.Option(help="Measure the exported model's latency here.")
    ] = True,
    force: Annotated[bool, typer.Option(help="Overwrite FILE.tflite and FILE.json.")] = False,
    db: DbOpt = None,
    json: JsonOpt = False,
) -> None:
    """Export a subnet to TFLite with proof: op list, JAX-vs-LiteRT logits, accuracy of both
    on the validation split, measured vs predicted latency; writes FILE.json (the input
    contract) beside it."""
    check_export_flags(candidate, run, subnet, precision, int8_io)
    exported = api.export(
        out, candidate=candidate, run=run, subnet=subnet, precision=precision, int8_io=int8_io,
        threads=threads, measure=measure, force=force, db=db,
    )  # fmt: skip
    emit(exported, json)


def check_export_flags(
    candidate: int | None, run: str | None, subnet: str | None, precision: str, int8_io: bool
) -> None:
    """Which flags go together, said in flags (`ExportRequest.check` says it in fields)."""
    if (candidate is None) == (run is None):
        raise UserError("give exactly one of --candidate ID or --run NAME --subnet JSON")
    if run is not None and subnet is None:
        raise UserError("--run needs --subnet JSON (the subnet to export)")
    if candidate is not None and subnet is not None:
        raise UserError("--subnet goes with --run; a candidate already names its subnet")
    if int8_io and precision != "int8":
        raise UserError("--int8-io needs --precision int8")


@app.command()
def dashboard(
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8501,
    host: Annotated[
        str, typer.Option(help="Address to listen on; 0.0.0.0 exposes it to the network.")
    ] = "127.0.0.1",
    db: DbOpt = None,
) -> None:
    """Browse searches, Pareto fronts, latency and runs in a Streamlit dashboard, and export
    the chosen subnet (serves on 127.0.0.1 until Ctrl-C)."""
    from hwnas.search.services import dashboard as dashboard_service

    dashboard_service.dashboard(db, port, host)


@app.command()
def report(
    search: Annotated[str, typer.Argument(help="Name of a search.")],
    out: Annotated[
        Path, typer.Option("--out", metavar="DIR", help="Folder for report.md and its PNGs.")
    ],
    bench: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="JSON of `python -m bench --out DIR` to include."),
    ] = None,
    db: DbOpt = None,
    json: JsonOpt = False,
) -> None:
    """Write a Markdown report with PNG figures on a search: fronts per target, predicted vs
    measured latency with baselines, samplers, weight sharing, cross-target specialisation,
    exports, and the commands and versions behind every number."""
    emit(api.report(search, out, bench=bench, db=db), json)


@app.command()
def demo(
    folder: Annotated[
        Path,
        typer.Option("--dir", help="Folder for the demo's database, checkpoints and exports."),
    ] = Path("hwnas-demo"),
    epochs: Annotated[
        int | None,
        typer.Option(help=f"Supernet epochs (default {DemoConfig.epochs})."),
    ] = None,
    trials: Annotated[
        int | None,
        typer.Option(
            help=f"Trials of the search's first round (default {DemoConfig.trials}"
            f"; up to {DemoConfig.rounds} closed-loop rounds follow)."
        ),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """From nothing to a measured int8 TFLite model on the built-in digits: train, measure cpu
    and tflite, fit predictors, search both under a budget, re-measure the front, export the
    best feasible subnet. About 10 minutes on 2 cores; a second run reuses what the first made."""
    from hwnas.search.services import demo as demo_service

    with flags_named({"folder": "dir"}):
        result = api.demo(folder, epochs=epochs, trials=trials)
    emit(result, json, None if json else demo_service.summary_text(result))
