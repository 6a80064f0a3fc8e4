"""The `hwnas` Typer apps: the top-level command and its `db`, `predictor` and `accuracy`
groups.

The commands register on them from `hwnas.search.cli.run_commands`, `.latency_commands`,
`.search_commands` and `.deliver_commands`,
which `hwnas.search.cli.entry` imports.
"""

from __future__ import annotations

import typer

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
accuracy_app = typer.Typer(
    help="Fit a predictor of a run's supernet accuracy (for searches whose supernet "
    "evaluation is costly).",
    no_args_is_help=True,
)
app.add_typer(accuracy_app, name="accuracy")
