"""Commands on spaces and training runs: `hwnas space`, `train`, `subnet`, `db`."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any

import typer

from hwnas import api
from hwnas.search.cli.app import app, db_app
from hwnas.search.cli.options import DbOpt, JsonOpt, SpaceOpt, flags_named
from hwnas.search.output import UserError, emit
from hwnas.supernet.train_config import LaunchConfig, TrainConfig


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
        presets = spaces.space_presets()
        emit(presets, json, human=presets.text())
    else:
        emit(api.space(space), json)


def _expert(help: str, *names: str, envvar: str | None = None) -> Any:
    """A hidden option: an expert setting, also a key of the training config file."""
    return typer.Option(*names, help=help, hidden=True, envvar=envvar, show_default=False)


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
            + "; and the expert settings "
            + ", ".join(f.name for f in fields(LaunchConfig))
            + " (docs/config.md). The flags, where given, win over the file.",
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Run name (default: the dataset).")] = None,
    resume: Annotated[
        bool,
        typer.Option(help="Continue the run NAME from its last checkpoint, on its recorded data."),
    ] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    runs_dir: Annotated[Path | None, _expert("Where checkpoints go.")] = None,
    loader: Annotated[str | None, _expert("auto, memory or stream.")] = None,
    workers: Annotated[
        int | None, _expert("Decoding processes.", "--workers", "--decode-workers")
    ] = None,
    checkpoint_minutes: Annotated[float | None, _expert("Mid-epoch checkpoints.")] = None,
    coordinator: Annotated[
        str | None, _expert("Process 0's HOST:PORT.", envvar="JAX_COORDINATOR_ADDRESS")
    ] = None,
    num_processes: Annotated[
        int | None, _expert("Processes in the job.", envvar="JAX_NUM_PROCESSES")
    ] = None,
    process_id: Annotated[
        int | None, _expert("This process's id.", envvar="JAX_PROCESS_ID")
    ] = None,
    db: DbOpt = None,
    json: JsonOpt = False,
) -> None:
    """Train the weight-shared supernet (sandwich rule, in-place distillation), on one
    process or on several hosts (one process each: docs/multihost.md). Above 32 px a
    one-process run restarts itself with a cache that keeps XLA's large host buffers between
    steps (1.3-1.5x faster steps at 224 px; HWNAS_HOST_MEMORY=0 turns it off). Expert
    settings (where checkpoints go, how a folder is read, the processes of a job) are keys
    of the --config file, each also a hidden flag: docs/config.md."""
    from hwnas.search.services import training

    launch = training.Launch(
        runs_dir=runs_dir,
        loader=loader,
        decode_workers=workers,
        checkpoint_minutes=checkpoint_minutes,
        coordinator=coordinator,
        num_processes=num_processes,
        process_id=process_id,
        progress=not quiet,
    )
    with flags_named({"decode_workers": "workers"}):  # the flag's documented name
        result = training.train(
            db,
            dataset,
            data_dir=data_dir,
            space_file=space,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            name=name,
            resume=resume,
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
    from hwnas.search.services import recorded_runs

    if (subnet is None) != random:
        raise UserError("give exactly one of --subnet JSON or --random --seed N")
    result = recorded_runs.subnet_info(db, run, subnet, seed if random else None)
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
