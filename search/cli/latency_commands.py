"""Latency commands: `hwnas measure`, `hwnas predictor fit`, `hwnas predict`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hwnas import api
from hwnas.latency.drift import NOISE_JOBS
from hwnas.latency.protocol import Protocol
from hwnas.latency.targets import Target
from hwnas.search.cli.app import app, predictor_app
from hwnas.search.cli.options import (
    BatchOpt,
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
from hwnas.search.result import Result


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
    target: Annotated[
        str | None,
        typer.Option(
            "--target",
            help="cpu, gpu or tflite, or a full key (tflite-int8-t4, cpu-b32, "
            "tflite-fp32-t1@pixel). With --import of a measurement file: the target it is "
            "imported into, any name (pixel7-npu); default: the target each line names. "
            "[default: cpu]",
            show_default=False,
        ),
    ] = None,
    threads: ThreadsOpt = 1,
    precision: PrecisionOpt = "fp32",
    device: DeviceOpt = "",
    batch: BatchOpt = 1,
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
        typer.Option(
            "--import",
            metavar="FILE",
            help="Import a worker's results file, or a measurement file taken anywhere: JSON "
            'lines {"subnet": {...}, "latency_ms": 12.3} (optional "batch", "spread", '
            '"target"), with --space (or --run) and --target. All lines or none.',
        ),
    ] = None,
    db: DbOpt = None,
    json: JsonOpt = False,
) -> None:
    """Measure subnet latency on a target (warm-up, interleaved, median with its spread), or
    import latencies measured elsewhere."""
    from hwnas.search.services import measuring, target_args

    if import_ is not None:
        emit(_import(db, import_, target, threads, precision, device, batch, run, space), json)
        return
    target = target or "cpu"
    if run is None and space is None:
        raise UserError(
            "give --run NAME (a trained run) or --space NAME|FILE (a space, untrained), or "
            "--import FILE"
        )
    t = target_args.parse_target(target, threads, precision, device, batch)
    protocol = measuring.protocol_for(passes, max_reps)
    from hwnas.supernet.space import load_space

    measured = load_space(space) if space is not None else None
    if jobs_out is not None:
        _check_job_file_flags(protocol, noise_floor)
    emit(
        measuring.measure(db, run, t, n, seed, jobs_out, blocks, protocol, noise_floor, measured),
        json,
    )


def _import(
    db: str | None,
    path: Path,
    target: str | None,
    threads: int,
    precision: str,
    device: str,
    batch: int,
    run: str | None,
    space: str | None,
) -> Result:
    """A worker's results file (its lines name their format), or a measurement file."""
    if not path.is_file():
        raise UserError(f"no such file {path}", field="import")
    from hwnas.search.services import importing, measuring, prediction, target_args

    if measuring.is_results_file(path):
        if target is not None or space is not None:
            raise UserError(
                f"{path} is a worker's results file: it names its target and space; drop "
                "--target and --space"
            )
        return measuring.import_results(db, path)
    if space is None and run is None:
        raise UserError(
            f"{path} is a measurement file: say which space its subnets are of with --space "
            "NAME|FILE (or --run NAME)"
        )
    t = target_args.parse_target(target, threads, precision, device, batch) if target else None
    return importing.import_measurements(db, path, prediction.space_for(db, space, run), t)


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
    batch: BatchOpt = 1,
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
    from hwnas.search.services import target_args

    t = target_args.parse_target(target, threads, precision, device, batch)
    emit(api.fit_predictor(t, run=run, space=space, kind=kind, holdout=holdout, seed=seed,
                           db=db), json)  # fmt: skip


@app.command()
def predict(
    subnet: Annotated[
        str | None, typer.Option("--subnet", metavar="JSON", help="The subnet as JSON.")
    ] = None,
    subnets: Annotated[
        Path | None,
        typer.Option(
            "--subnets",
            metavar="FILE",
            help='... or a file of JSON lines {"subnet": {...}} (- for stdin): prints one '
            '{"latency_ms": ...} line per line, in order.',
        ),
    ] = None,
    target: TargetOpt = "cpu",
    threads: ThreadsOpt = 1,
    precision: PrecisionOpt = "fp32",
    device: DeviceOpt = "",
    batch: BatchOpt = 1,
    kind: Annotated[str, typer.Option(help="main, macs or lut.")] = "main",
    space: MeasuredSpaceOpt = None,
    run: OfRunOpt = None,
    db: DbOpt = None,
    json: JsonOpt = False,
) -> None:
    """Predict subnets' latency on a target with the predictor fitted for its space."""
    from hwnas.search.services import target_args

    t = target_args.parse_target(target, threads, precision, device, batch)
    if (subnet is None) == (subnets is None):
        raise UserError("give --subnet JSON (one subnet) or --subnets FILE (many), not both")
    if subnets is None:
        emit(api.predict(t, subnet or "", run=run, space=space, kind=kind, db=db), json)
        return
    _predict_file(t, subnets, kind, space, run, db)


def _predict_file(
    t: Target, path: Path, kind: str, space: str | None, run: str | None, db: str | None
) -> None:
    import sys
    import tempfile
    import time

    from hwnas.search.services.prediction import predict_file, space_key_for

    start = time.perf_counter()
    key = space_key_for(db, space, run)
    with tempfile.NamedTemporaryFile("w+b", suffix=".jsonl") as tmp:
        if str(path) == "-":  # stdin, copied so that bad lines are found by number
            tmp.write(sys.stdin.buffer.read())
            tmp.flush()
            path = Path(tmp.name)
        ms = predict_file(db, t, path, kind, key)
    sys.stdout.write("".join(f'{{"latency_ms": {v!r}}}\n' for v in ms.tolist()))
    sys.stdout.flush()
    seconds = time.perf_counter() - start
    print(f"predicted {len(ms)} subnets on {t.key} in {seconds:.2f} s", file=sys.stderr)
