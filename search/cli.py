"""The `hwnas` command line: parses arguments and calls the service functions.

No logic lives here that a test or the dashboard would need; each command is a few lines that
call a function of `search.services` (or `db`) and print its result.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from db.session import DbError
from latency.protocol import Protocol
from search import (
    dashboard_service,
    demo_service,
    export_service,
    latency_service,
    predictor_service,
    report_service,
    search_service,
    services,
    train_service,
)
from search.initial_design import N_INITIAL
from search.output import EXIT_USER_ERROR, UserError, emit, fail
from supernet.checkpoint import CheckpointError
from supernet.data import DataError
from supernet.distributed import Cluster, ClusterError
from supernet.space import SpaceError, load_space

app = typer.Typer(
    name="hwnas",
    help="Hardware-aware neural architecture search: train one supernet, measure latency on "
    "your devices, search the accuracy/latency Pareto front, export to TFLite.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
db_app = typer.Typer(help="Create and inspect the hwnas database.", no_args_is_help=True)
app.add_typer(db_app, name="db")
predictor_app = typer.Typer(help="Fit and evaluate latency predictors.", no_args_is_help=True)
app.add_typer(predictor_app, name="predictor")

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help="SQLAlchemy database URL (default: $HWNAS_DB, else sqlite:///hwnas.db).",
        show_default=False,
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object as the last line on stdout.")
]
SpaceOpt = Annotated[
    str | None,
    typer.Option(
        "--space",
        metavar="NAME|FILE",
        help="Search space: a preset (digits, cifar, ofa-mbv3; see `hwnas space --list`) or a "
        ".json/.toml file. Default: digits.",
        show_default=False,
    ),
]
MeasuredSpaceOpt = Annotated[
    str | None,
    typer.Option(
        "--space",
        metavar="NAME|FILE",
        help="The space whose measurements are meant (a preset or a .json/.toml file). "
        "Default: the only space measured on the target.",
        show_default=False,
    ),
]
OfRunOpt = Annotated[
    str | None,
    typer.Option(help="... or the space this training run trained.", show_default=False),
]

# Errors a user can cause; anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[Exception], ...] = (
    UserError,
    DbError,
    SpaceError,
    DataError,
    CheckpointError,
    ClusterError,
)


@app.command()
def space(
    space: SpaceOpt = None,
    list_: Annotated[
        bool, typer.Option("--list", help="List the preset spaces shipped with hwnas.")
    ] = False,
    db: DbOpt = None,
    json: JsonOpt = False,
) -> None:
    """Describe a search space (number of subnets, largest and smallest subnet), or list the
    presets."""
    if list_:
        result = services.space_presets()
        emit(result, json, human=services.presets_text(result))
    else:
        emit(services.space_summary(space), json)


@app.command()
def train(
    dataset: Annotated[
        str, typer.Option(help="digits (built in), cifar10 (binary), folder or npz.")
    ] = "digits",
    data_dir: Annotated[
        str | None, typer.Option(help="Data directory (cifar10, folder) or .npz file.")
    ] = None,
    space: SpaceOpt = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (default 20).")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Batch size (default 64; 32 for spaces above 64 px).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the split, init, data order, subnets.")] = 0,
    name: Annotated[str | None, typer.Option(help="Run name (default: the dataset).")] = None,
    resume: Annotated[
        bool,
        typer.Option(help="Continue the run NAME from its last checkpoint, on its recorded data."),
    ] = False,
    runs_dir: Annotated[
        Path, typer.Option(help="Where checkpoints go (runs/NAME/supernet.ckpt).")
    ] = train_service.DEFAULT_RUNS_DIR,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    loader: Annotated[
        str,
        typer.Option(
            help="How a folder is read: auto (in memory up to 1 GB decoded, else streamed), "
            "memory, or stream (grain workers decode, crop and flip; memory independent of "
            "the number of images)."
        ),
    ] = "auto",
    workers: Annotated[
        int | None,
        typer.Option(help="Decoding processes of a streamed folder (default: cores - 1, 1-8)."),
    ] = None,
    checkpoint_minutes: Annotated[
        float, typer.Option(help="Also checkpoint within an epoch this often (minutes).")
    ] = 10.0,
    coordinator: Annotated[
        str | None,
        typer.Option(
            envvar="JAX_COORDINATOR_ADDRESS",
            help="Several hosts: process 0's HOST:PORT (env JAX_COORDINATOR_ADDRESS).",
        ),
    ] = None,
    num_processes: Annotated[
        int | None,
        typer.Option(envvar="JAX_NUM_PROCESSES", help="Processes in the job (default 1)."),
    ] = None,
    process_id: Annotated[
        int | None,
        typer.Option(envvar="JAX_PROCESS_ID", help="This process's id, 0..N-1 (0 writes)."),
    ] = None,
    db: DbOpt = None,
    json: JsonOpt = False,
) -> None:
    """Train the weight-shared supernet (sandwich rule, in-place distillation), on one
    process or on several hosts (one process each: docs/multihost.md)."""
    launch = train_service.Launch(
        loader=loader,
        workers=workers,
        cluster=Cluster.from_args(coordinator, num_processes, process_id),
        checkpoint_minutes=checkpoint_minutes,
        progress=not quiet,
    )
    result = train_service.train(
        db,
        dataset,
        data_dir=data_dir,
        space_file=space,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        name=name,
        resume=resume,
        runs_dir=runs_dir,
        launch=launch,
    )
    emit(result, json)


@app.command()
def subnet(
    run: Annotated[str, typer.Option(help="Name of a finished training run.")],
    subnet: Annotated[
        str | None, typer.Option("--subnet", metavar="JSON", help="The subnet as JSON.")
    ] = None,
    random: Annotated[bool, typer.Option("--random", help="Sample a random subnet.")] = False,
    seed: Annotated[int, typer.Option(help="Seed for --random.")] = 0,
    db: DbOpt = None,
    json: JsonOpt = False,
) -> None:
    """Evaluate one subnet with the supernet's weights: val_acc, params, flops."""
    result = train_service.subnet_info(db, run, subnet, seed if random else None)
    emit(result, json)


TargetOpt = Annotated[
    str,
    typer.Option(
        "--target",
        help="cpu, gpu or tflite (or a full key such as tflite-int8-t4 or tflite-fp32-t1@pixel).",
    ),
]
ThreadsOpt = Annotated[int, typer.Option(help="tflite: interpreter threads (part of the target).")]
PrecisionOpt = Annotated[str, typer.Option(help="tflite: fp32 or int8 (part of the target).")]
DeviceOpt = Annotated[
    str, typer.Option(help="Label of the measured device when it is not this machine.")
]


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
            help=f"Measure the last {latency_service.NOISE_JOBS} subnets again at the end and "
            "report how well the two measurements agree (the noise floor)."
        ),
    ] = True,
    jobs_out: Annotated[
        Path | None,
        typer.Option(metavar="FILE", help="Write a job file for `python -m latency.worker`."),
    ] = None,
    import_: Annotated[
        Path | None,
        typer.Option("--import", metavar="FILE", help="Import a worker's results file."),
    ] = None,
    db: DbOpt = None,
    json: JsonOpt = False,
) -> None:
    """Measure subnet latency on a target (warm-up, interleaved, median with its spread)."""
    if import_ is not None:
        emit(latency_service.import_results(db, import_), json)
        return
    if run is None and space is None:
        raise UserError(
            "give --run NAME (a trained run) or --space NAME|FILE (a space, untrained), or "
            "--import FILE"
        )
    t = latency_service.parse_target(target, threads, precision, device)
    protocol = latency_service.protocol_for(passes, max_reps)
    measured = load_space(space) if space is not None else None
    emit(
        latency_service.measure(
            db, run, t, n, seed, jobs_out, blocks, protocol, noise_floor, measured
        ),
        json,
    )


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
    t = latency_service.parse_target(target, threads, precision, device)
    key = predictor_service.space_key_for(db, space, run)
    emit(predictor_service.fit(db, t, kind, holdout, seed, key), json)


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
    t = latency_service.parse_target(target, threads, precision, device)
    key = predictor_service.space_key_for(db, space, run)
    emit(predictor_service.predict(db, t, subnet, kind, key), json)


@app.command()
def search(
    run: Annotated[str, typer.Option(help="Name of a finished training run.")],
    target: Annotated[
        list[str],
        typer.Option(
            "--target",
            help="Target whose predicted latency is minimised (repeat for several): cpu, gpu, "
            "tflite or a full key such as tflite-int8-t4. Each needs a fitted predictor.",
        ),
    ],
    budget: Annotated[
        list[str] | None,
        typer.Option(
            "--budget",
            metavar="TARGET=MS",
            help="Hard latency budget on a target, e.g. tflite=0.3 (repeatable).",
        ),
    ] = None,
    trials: Annotated[
        int,
        typer.Option(
            help="Trials of the first round (running it again with a larger number continues it)."
        ),
    ] = 100,
    rounds: Annotated[
        int,
        typer.Option(
            help="Closed loop: after the front is measured, up to this many more rounds, each "
            "refitting the predictors with the front's measurements, re-scoring every trial "
            "and searching on; it stops once every front subnet measures within 10% of its "
            "prediction (0: one round, no refit)."
        ),
    ] = search_service.DEFAULT_ROUNDS,
    round_trials: Annotated[
        int | None,
        typer.Option(help="Trials of each later round (default: a third of --trials, >= 10)."),
    ] = None,
    sampler: Annotated[str, typer.Option(help="tpe (default), nsga2, gp or random.")] = "tpe",
    workers: Annotated[int, typer.Option(help="Local worker processes.")] = 1,
    name: Annotated[
        str | None, typer.Option(help="Search (and Optuna study) name; default RUN-search.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Sampler seed (worker i uses seed+i).")] = None,
    objective: Annotated[
        list[str] | None,
        typer.Option("--objective", help="Also minimise params or macs (repeatable)."),
    ] = None,
    margin: Annotated[
        str,
        typer.Option(
            help="Safety margin on budgets: predicted x (1 + margin) must fit. auto = the "
            "predictor's held-out 95th percentile of measured/predicted - 1."
        ),
    ] = "auto",
    measure: Annotated[
        bool,
        typer.Option(
            help="Measure the Pareto front on this machine's targets after each round "
            "(--no-measure: one round, nothing measured)."
        ),
    ] = True,
    initial: Annotated[
        int,
        typer.Option(
            help="A new study's first trials: subnets spread evenly over the size range, from "
            "the smallest to the largest (0: none; ignored by --sampler random)."
        ),
    ] = N_INITIAL,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    db: DbOpt = None,
    json: JsonOpt = False,
) -> None:
    """Search the accuracy/latency Pareto front with Optuna under hard latency budgets."""
    result = search_service.search(
        db, run, target, budget or [], trials, sampler, workers, name, seed, objective or [],
        measure=measure, progress=not quiet, margin=margin, initial=initial, rounds=rounds,
        round_trials=round_trials,
    )  # fmt: skip
    emit(result, json)


@app.command()
def pareto(
    search: Annotated[str, typer.Argument(help="Name of a search.")],
    db: DbOpt = None,
    json: JsonOpt = False,
) -> None:
    """List the Pareto front of a search (with measured_ms where it was measured)."""
    emit(search_service.pareto(db, search), json)


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
    req = export_service.ExportRequest(
        out, candidate, run, subnet, precision, int8_io, threads, force, measure
    )
    emit(export_service.export(db, req), json)


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
    emit(report_service.report(db, search, out, bench), json)


@app.command()
def demo(
    folder: Annotated[
        Path,
        typer.Option("--dir", help="Folder for the demo's database, checkpoints and exports."),
    ] = Path("hwnas-demo"),
    epochs: Annotated[
        int | None,
        typer.Option(help=f"Supernet epochs (default {demo_service.DemoConfig.epochs})."),
    ] = None,
    trials: Annotated[
        int | None,
        typer.Option(
            help=f"Trials of the search's first round (default {demo_service.DemoConfig.trials}"
            f"; up to {demo_service.DemoConfig.rounds} closed-loop rounds follow)."
        ),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """From nothing to a measured int8 TFLite model on the built-in digits: train, measure cpu
    and tflite, fit predictors, search both under a budget, re-measure the front, export the
    best feasible subnet. About 10 minutes on 2 cores; a second run reuses what the first made."""
    cfg = demo_service.config_from(folder, epochs=epochs, trials=trials)
    result = demo_service.demo(cfg)
    emit(result, json, None if json else demo_service.summary_text(result))


@db_app.command("init")
def db_init(db: DbOpt = None, json: JsonOpt = False) -> None:
    """Create the hwnas tables (idempotent) and record the schema version."""
    emit(services.db_init(db), json)


@db_app.command("status")
def db_status(db: DbOpt = None, json: JsonOpt = False) -> None:
    """Show the schema version and the row count of every table."""
    emit(services.db_status(db), json)


def main(argv: list[str] | None = None) -> int:
    """Console entry point: user errors become one line on stderr and exit status 2."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="hwnas", standalone_mode=False)
    except USER_ERRORS as e:
        fail(str(e))
        return EXIT_USER_ERROR
    except NoArgsIsHelpError as e:
        sys.stdout.write(e.format_message() + "\n")
        return 0
    except UsageError as e:
        hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx else ""
        fail(f"{e.format_message()}{hint}")
        return EXIT_USER_ERROR
    except typer.Abort:
        fail("aborted")
        return 130
    except ClickException as e:
        fail(e.format_message())
        return EXIT_USER_ERROR
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
