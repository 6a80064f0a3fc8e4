"""Search commands: `hwnas search`, `hwnas pareto` and `hwnas accuracy fit`."""

from __future__ import annotations

from typing import Annotated

import typer
from hwnas.search.cli.app import accuracy_app, app
from hwnas.search.cli.options import DbOpt, JsonOpt
from hwnas.search.output import emit
from hwnas.search.search_config import DEFAULT_ROUNDS, N_INITIAL


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
            "prediction (0: one round, no refit). A search driven by the accuracy predictor "
            "also goes on while a round brings new subnets onto its front re-scored with the "
            "supernet, refitting the accuracy predictor with them: it usually runs every round, "
            "and many small ones do best (e.g. --trials 50 --rounds 9 --round-trials 50)."
        ),
    ] = DEFAULT_ROUNDS,
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
            "(--no-measure: nothing measured; one round, unless the accuracy predictor drives "
            "the search)."
        ),
    ] = True,
    initial: Annotated[
        int,
        typer.Option(
            help="A new study's first trials: subnets spread evenly over the size range, from "
            "the smallest to the largest (0: none; ignored by --sampler random)."
        ),
    ] = N_INITIAL,
    accuracy: Annotated[
        str,
        typer.Option(
            help="What scores a trial's accuracy: supernet (BN recalibrated, validation split), "
            "predictor (the run's accuracy predictor, `hwnas accuracy fit`; the front is then "
            "re-scored with the supernet and both are kept) or auto (the predictor where the "
            "run has one and a supernet evaluation takes over 0.5 s)."
        ),
    ] = "auto",
    accuracy_predictor: Annotated[
        int | None, typer.Option(help="Id of the accuracy predictor (default: the run's newest).")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    db: DbOpt = None,
    json: JsonOpt = False,
) -> None:
    """Search the accuracy/latency Pareto front with Optuna under hard latency budgets."""
    from hwnas.search.services import search as search_service

    result = search_service.search(
        db, run, target, budget or [], trials, sampler, workers, name, seed, objective or [],
        measure=measure, progress=not quiet, margin=margin, initial=initial, rounds=rounds,
        round_trials=round_trials, accuracy=accuracy, accuracy_predictor=accuracy_predictor,
    )  # fmt: skip
    emit(result, json)


@app.command()
def pareto(
    search: Annotated[str, typer.Argument(help="Name of a search.")],
    db: DbOpt = None,
    json: JsonOpt = False,
) -> None:
    """List the Pareto front of a search (with measured_ms where it was measured)."""
    from hwnas.search.services import search as search_service

    emit(search_service.pareto(db, search), json)


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
