"""Latency commands: `hwnas measure`, `hwnas predictor fit`, `hwnas predict`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hwnas import api
from hwnas.latency.drift import NOISE_JOBS
from hwnas.latency.protocol import Protocol
from hwnas.search.cli.app import app, predictor_app
from hwnas.search.cli.options import (
    DbOpt,
    DeviceOpt,
    JsonOpt,
    MeasuredSpaceOpt,
    OfRunOpt,
    PrecisionOpt,
    TargetOpt,
    ThreadsOpt,
)
from hwnas.search.output import UserError, emit


@app.command()
def measure(
    run: Annotated[
        str | None,
        typer.Option(help="Training run whose subnets are measured (with its trained weights)."),
    ] = None,
    space: Annotated[
        str | None,
        typer.Option(
            "--space",
            metavar="NAME|FILE",
            help="... or measure a space without training it: a preset or a .json/.toml file. "
            "Latency does not depend on what the weights learned, so the models get "
            "initialised weights (int8: calibrated on synthetic inputs). A predictor fitted on "
            "these serves every run later trained on the same space.",
            show_default=False,
        ),
    ] = None,
    target: TargetOpt = "cpu",
    threads: ThreadsOpt = 1,
    precision: PrecisionOpt = "fp32",
    device: DeviceOpt = "",
    n: Annotated[int, typer.Option("--n", help="Random subnets to measure.")] = 50,
    seed: Annotated[int, typer.Option(help="Seed of the subnet sample.")] = 0,
    blocks: Annotated[
        bool, typer.Option(help="Also measure every layer alone (lookup-table baseline).")
    ] = False,
    passes: Annotated[
        int,
        typer.Option(
            help="Passes over all the models, each timing its share of --max-reps on freshly "
            "built runners; a model's latency is the mean of its pass medians (1: faster)."
        ),
    ] = Protocol.passes,
    max_reps: Annotated[
        int,
        typer.Option(
            help="Most timed calls per model, over all passes, in whole rounds of "
            f"{Protocol.per_round} (fewer: faster); a model also stops once its timed calls "
            f"have taken {Protocol.max_ms / 1000:g} s."
        ),
    ] = Protocol.max_reps,
    noise_floor: Annotated[
        bool,
        typer.Option(
            help=f"Measure the last {NOISE_JOBS} subnets again at the end and "
            "report how well the two measurements agree (the noise floor)."
        ),
    ] = True,
    jobs_out: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="Write a job file for `python -m hwnas.latency.worker`."
        ),
    ] = None,
    import_: Annotated[
        Path | None,
        typer.Option("--import", metavar="FILE", help="Import a worker's results file."),
    ] = None,
    db: DbOpt = None,
    json: JsonOpt = False,
) -> None:
    """Measure subnet latency on a target (warm-up, interleaved, median with its spread)."""
    from hwnas.search.services import measuring

    if import_ is not None:
        emit(measuring.import_results(db, import_), json)
        return
    if run is None and space is None:
        raise UserError(
            "give --run NAME (a trained run) or --space NAME|FILE (a space, untrained), or "
            "--import FILE"
        )
    t = measuring.parse_target(target, threads, precision, device)
    protocol = measuring.protocol_for(passes, max_reps)
    from hwnas.supernet.space import load_space

    measured = load_space(space) if space is not None else None
    if jobs_out is not None:
        _check_job_file_flags(protocol, noise_floor)
    emit(
        measuring.measure(db, run, t, n, seed, jobs_out, blocks, protocol, noise_floor, measured),
        json,
    )


def _check_job_file_flags(protocol: Protocol, noise_floor: bool) -> None:
    """A job file is measured by the worker, under the worker's own flags."""
    if protocol != Protocol():
        raise UserError(
            "--passes and --max-reps apply to measuring here; with --jobs-out give them to "
            "`python -m hwnas.latency.worker`"
        )
    if not noise_floor:
        raise UserError("--no-noise-floor applies to measuring here; drop it with --jobs-out")


@predictor_app.command("fit")
def predictor_fit(
    target: TargetOpt = "cpu",
    threads: ThreadsOpt = 1,
    precision: PrecisionOpt = "fp32",
    device: DeviceOpt = "",
    kind: Annotated[str, typer.Option(help="main, macs or lut: the one reported.")] = "main",
    holdout: Annotated[float, typer.Option(help="Share of subnets held out.")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed of the held-out split.")] = 0,
    space: MeasuredSpaceOpt = None,
    run: OfRunOpt = None,
    db: DbOpt = None,
    json: JsonOpt = False,
) -> None:
    """Fit the latency predictors of a (space, target) pair; evaluate them on held-out
    subnets."""
    from hwnas.search.services import measuring

    t = measuring.parse_target(target, threads, precision, device)
    emit(api.fit_predictor(t, run=run, space=space, kind=kind, holdout=holdout, seed=seed,
                           db=db), json)  # fmt: skip


@app.command()
def predict(
    subnet: Annotated[str, typer.Option("--subnet", metavar="JSON", help="The subnet as JSON.")],
    target: TargetOpt = "cpu",
    threads: ThreadsOpt = 1,
    precision: PrecisionOpt = "fp32",
    device: DeviceOpt = "",
    kind: Annotated[str, typer.Option(help="main, macs or lut.")] = "main",
    space: MeasuredSpaceOpt = None,
    run: OfRunOpt = None,
    db: DbOpt = None,
    json: JsonOpt = False,
) -> None:
    """Predict one subnet's latency on a target with the predictor fitted for its space."""
    from hwnas.search.services import measuring

    t = measuring.parse_target(target, threads, precision, device)
    emit(api.predict(t, subnet, run=run, space=space, kind=kind, db=db), json)
