"""Commands on spaces and training runs: `hwnas space`, `train`, `subnet`, `db`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from hwnas.search.cli.app import app, db_app
from hwnas.search.cli.options import DbOpt, JsonOpt, SpaceOpt
from hwnas.search.output import emit
from hwnas.search.search_config import DEFAULT_RUNS_DIR
from hwnas.supernet.distributed import Cluster
from hwnas.supernet.train_config import TrainConfig


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
    from hwnas.search.services import spaces

    if list_:
        result = spaces.space_presets()
        emit(result, json, human=spaces.presets_text(result))
    else:
        emit(spaces.space_summary(space), json)


@app.command()
def train(
    dataset: Annotated[
        str, typer.Option(help="digits (built in), cifar10 (binary), folder or npz.")
    ] = "digits",
    data_dir: Annotated[
        str | None, typer.Option(help="Data directory (cifar10, folder) or .npz file.")
    ] = None,
    space: SpaceOpt = None,
    epochs: Annotated[
        int | None, typer.Option(help=f"Epochs (default {TrainConfig.epochs}).")
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            help=f"Batch size (default {TrainConfig.batch_size}; 32 for spaces above 64 px)."
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            help="Seed of the split, init, data order and subnets "
            f"(default {TrainConfig.seed}, or the config file's)."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE.toml",
            help="Training settings: any of "
            + ", ".join(f"{k} ({v})" for k, v in TrainConfig().to_dict().items())
            + ". The flags above, where given, win over the file.",
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Run name (default: the dataset).")] = None,
    resume: Annotated[
        bool,
        typer.Option(help="Continue the run NAME from its last checkpoint, on its recorded data."),
    ] = False,
    runs_dir: Annotated[
        Path, typer.Option(help="Where checkpoints go (runs/NAME/supernet.ckpt).")
    ] = DEFAULT_RUNS_DIR,
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
    process or on several hosts (one process each: docs/multihost.md). Above 32 px a
    one-process run restarts itself with a cache that keeps XLA's large host buffers between
    steps (1.3-1.5x faster steps at 224 px; HWNAS_HOST_MEMORY=0 turns it off)."""
    from hwnas.search.services import training as train_service

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
        config_file=config,
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
    from hwnas.search.services import recorded_runs as run_service

    result = run_service.subnet_info(db, run, subnet, seed if random else None)
    emit(result, json)


@db_app.command("init")
def db_init(db: DbOpt = None, json: JsonOpt = False) -> None:
    """Create the hwnas tables (idempotent) and record the schema version."""
    from hwnas.search.services import database

    emit(database.db_init(db), json)


@db_app.command("status")
def db_status(db: DbOpt = None, json: JsonOpt = False) -> None:
    """Show the schema version and the row count of every table."""
    from hwnas.search.services import database

    emit(database.db_status(db), json)
