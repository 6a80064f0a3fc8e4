"""Search commands: `hwnas search`, `hwnas pareto` and `hwnas accuracy fit`."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any

import typer

from hwnas import api
from hwnas.search.cli.app import accuracy_app, app
from hwnas.search.cli.options import DbOpt, JsonOpt
from hwnas.search.output import UserError, emit
from hwnas.search.search_config import (
    DEFAULT_ROUNDS,
    SearchConfig,
    SearchFile,
    merged,
    read_search_toml,
)


def _expert(help_: str) -> dict[str, Any]:
    """An expert setting: kept working as a flag, hidden from `--help`, a config key."""
    return {"help": help_, "hidden": True}


@app.command()
def search(
    run: Annotated[
        str | None, typer.Option(help="Name of a finished training run.", show_default=False)
    ] = None,
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            help="Target whose predicted latency is minimised (repeat for several): cpu, gpu, "
            "tflite, a full key such as tflite-int8-t4 or cpu-b32, or an imported target's "
            "name. Each needs a fitted predictor.",
            show_default=False,
        ),
    ] = None,
    budget: Annotated[
        list[str] | None,
        typer.Option(
            "--budget",
            metavar="TARGET=MS",
            help="Hard latency budget on a target, e.g. tflite=0.3 (repeatable).",
        ),
    ] = None,
    trials: Annotated[
        int | None,
        typer.Option(
            help=f"Trials of the first round (default {SearchConfig.trials}; running it again "
            "with a larger number continues it).",
            show_default=False,
        ),
    ] = None,
    rounds: Annotated[
        int | None,
        typer.Option(
            help=f"Closed loop (default {DEFAULT_ROUNDS}): after the front is measured, up to "
            "this many more rounds, each refitting the predictors with the front's "
            "measurements and searching on, until the measured front agrees with its "
            "predictions (0: one round). See docs/search.md.",
            show_default=False,
        ),
    ] = None,
    sampler: Annotated[
        str | None,
        typer.Option(help="tpe (default), nsga2, gp or random.", show_default=False),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Local search processes (default 1).", show_default=False)
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Search (and Optuna study) name; default RUN-search.")
    ] = None,
    accuracy: Annotated[
        str | None,
        typer.Option(
            help="What scores a trial's accuracy: supernet (BN recalibrated, validation split), "
            "predictor (the run's accuracy predictor, `hwnas accuracy fit`; the front is then "
            "re-scored with the supernet and both are kept) or auto (default: the predictor "
            "where the run has a good one and a supernet evaluation is costly; it says why).",
            show_default=False,
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE.toml",
            help="Search settings: any of run, target, budget, objective and "
            + ", ".join(f.name for f in fields(SearchConfig))
            + " (docs/config.md). Flags, where given, win over the file.",
        ),
    ] = None,
    round_trials: Annotated[
        int | None, typer.Option(**_expert("Trials of each later round."))
    ] = None,
    seed: Annotated[int | None, typer.Option(**_expert("Sampler seed."))] = None,
    objective: Annotated[
        list[str] | None, typer.Option("--objective", **_expert("Also minimise params or macs."))
    ] = None,
    margin: Annotated[str | None, typer.Option(**_expert("Safety margin on budgets."))] = None,
    measure: Annotated[
        bool | None, typer.Option("--measure/--no-measure", **_expert("Measure each front."))
    ] = None,
    initial: Annotated[int | None, typer.Option(**_expert("A new study's first trials."))] = None,
    accuracy_predictor: Annotated[
        int | None, typer.Option(**_expert("Id of the accuracy predictor."))
    ] = None,
    quiet: Annotated[bool | None, typer.Option("--quiet", **_expert("No progress bar."))] = None,
    db: DbOpt = None,
    json: JsonOpt = False,
) -> None:
    """Search the accuracy/latency Pareto front with Optuna under hard latency budgets."""

    given = {k: v for k, v in locals().items() if k in CONFIG_FIELDS}
    file = read_search_toml(config) if config is not None else SearchFile({}, {})
    settings = merged(file.config, given)
    run = run if run is not None else file.problem.get("run")
    if run is None:
        raise UserError("give the {field} to search (a finished training run)", field="run")
    lists = {"target": target, "budget": budget, "objective": objective}
    given_lists = {k: v if v is not None else file.problem.get(k, []) for k, v in lists.items()}
    found = api.search(
        run, given_lists["target"], budgets=given_lists["budget"],
        objectives=given_lists["objective"], config=settings, db=db,
    )  # fmt: skip
    emit(found, json)


CONFIG_FIELDS = {f.name for f in fields(SearchConfig)}


@app.command()
def pareto(
    search: Annotated[str, typer.Argument(help="Name of a search.")],
    db: DbOpt = None,
    json: JsonOpt = False,
) -> None:
    """List the Pareto front of a search (with measured_ms where it was measured)."""
    emit(api.pareto(search, db=db), json)


@accuracy_app.command("fit")
def accuracy_fit(
    run: Annotated[str, typer.Option(help="Name of a finished training run.")],
    n: Annotated[
        int,
        typer.Option(
            "--n",
            help="Subnets to fit on, spread over the size range and evaluated with the "
            "supernet (those already evaluated for the run's weights are reused).",
        ),
    ] = 400,
    held_out: Annotated[
        int, typer.Option(help="Further subnets, evaluated alike, to judge the predictor on.")
    ] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the subnet samples and the fit.")] = 0,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    db: DbOpt = None,
    json: JsonOpt = False,
) -> None:
    """Fit a predictor of the run's supernet accuracy (ridge or Once-for-All's MLP, chosen by
    cross-validation); report held-out Kendall tau beside the supernet's split-half tau."""
    from hwnas.search.services import accuracy_fit as accuracy_service

    emit(accuracy_service.fit(db, run, n, held_out, seed, progress=not quiet), json)
