"""hwnas's Python API: the CLI's verbs as functions of typed arguments, returning the frozen
results the CLI prints (`result.to_json()` is the command's `--json` object).

Each verb opens the database named by `db` (a SQLAlchemy URL; None: `$HWNAS_DB`, else
`sqlite:///hwnas.db` in the working directory), does the work through the same service function
the CLI and the dashboard call, and raises `hwnas.HwnasError` on bad input (its `field` names the
argument at fault). The services, and with them JAX, Optuna and SQLAlchemy, are imported when a
verb is first called, so `import hwnas` stays light. A tour: docs/python-api.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hwnas.latency.targets import Target
    from hwnas.search.search_config import SearchConfig
    from hwnas.search.services.demo import DemoResult
    from hwnas.search.services.export import ExportResult
    from hwnas.search.services.importing import MeasurementImport
    from hwnas.search.services.measuring import JobsResult, MeasureResult
    from hwnas.search.services.prediction import FitResult, Prediction
    from hwnas.search.services.report import ReportResult
    from hwnas.search.services.search import ParetoResult, SearchResult
    from hwnas.search.services.spaces import SpaceSummary
    from hwnas.search.services.training import TrainResult
    from hwnas.supernet.space import SearchSpace, Subnet

    SpaceArg = SearchSpace | str | Path

__all__ = [
    "demo",
    "export",
    "fit_predictor",
    "import_measurements",
    "measure",
    "pareto",
    "predict",
    "predict_many",
    "report",
    "search",
    "space",
    "train",
]


def _target(target: Target | str) -> Target:
    from hwnas.latency.targets import Target

    return target if isinstance(target, Target) else Target.parse(target)


def _subnet_json(subnet: Subnet | Mapping | str) -> str:
    if isinstance(subnet, str):
        return subnet
    if isinstance(subnet, Mapping):
        return json.dumps(dict(subnet))
    return subnet.to_json()


def _space_key(db: str | None, space: SpaceArg | None, run: str | None) -> str | None:
    """The key of the space meant by `space` and/or `run` (both must name the same one)."""
    from hwnas.exceptions import HwnasError
    from hwnas.search.services.prediction import space_key_for
    from hwnas.supernet.space import SearchSpace

    if not isinstance(space, SearchSpace):
        return space_key_for(db, None if space is None else str(space), run)
    if run is None:
        return space.key
    trained = space_key_for(db, None, run)
    if trained != space.key:
        raise HwnasError(f"run {run} trained another space than {space.name}", field="space")
    return trained


def space(space: SpaceArg | None = None) -> SpaceSummary:
    """A space's size, its largest and smallest subnets and their costs (`hwnas space`):
    a preset name (`digits`, `cifar`, `ofa-mbv3`), a .json/.toml file or a `SearchSpace`."""
    from hwnas.search.services.spaces import space_summary

    return space_summary(space)


def train(
    dataset: str = "digits",
    *,
    space: SpaceArg | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    name: str | None = None,
    data_dir: str | Path | None = None,
    resume: bool = False,
    runs_dir: str | Path | None = None,
    config: str | Path | None = None,
    progress: bool = True,
    db: str | None = None,
) -> TrainResult:
    """Train (or `resume`) the weight-shared supernet on `dataset` (`hwnas train`): digits,
    cifar10, folder or npz (`data_dir`). `config` is a training config file (TOML,
    docs/config.md); the arguments given win over it. Checkpoints go to RUNS_DIR/NAME/."""
    from hwnas.search.services.training import train as run_training

    return run_training(
        db, dataset, data_dir=None if data_dir is None else str(data_dir), space_file=space,
        epochs=epochs, batch_size=batch_size, seed=seed, name=name, resume=resume,
        runs_dir=runs_dir, progress=progress, config_file=config,
    )  # fmt: skip


def measure(
    target: Target | str,
    *,
    run: str | None = None,
    space: SpaceArg | None = None,
    n: int = 50,
    seed: int = 0,
    blocks: bool = False,
    jobs_out: str | Path | None = None,
    db: str | None = None,
) -> MeasureResult | JobsResult:
    """Measure `n` random subnets of a trained `run` (or of an untrained `space`) on `target`
    here and record them (`hwnas measure`); with `jobs_out`, write a job file for a device
    instead (a `JobsResult`). `target`: a `Target` or its key (`cpu`, `tflite-int8-t4`)."""
    from hwnas.search.services.measuring import measure as run_measure
    from hwnas.supernet.space import load_space

    given = load_space(space) if space is not None else None  # with a run: checked against it
    return run_measure(
        db, run, _target(target), n=n, seed=seed, jobs_out=jobs_out, blocks=blocks, space=given,
    )  # fmt: skip


def fit_predictor(
    target: Target | str,
    *,
    run: str | None = None,
    space: SpaceArg | None = None,
    kind: str = "main",
    holdout: float = 0.2,
    seed: int = 0,
    db: str | None = None,
) -> FitResult:
    """Fit the latency predictors of `target` for the space of `run` (or `space`) on its
    measurements, with held-out scores and the baselines beside (`hwnas predictor fit`): a
    share `holdout` of the subnets held out (split by `seed`), `kind` reported."""
    from hwnas.search.services.prediction import fit

    key = _space_key(db, space, run)
    return fit(db, _target(target), kind, holdout, seed, space_key=key)


def predict(
    target: Target | str,
    subnet: Subnet | Mapping | str,
    *,
    run: str | None = None,
    space: SpaceArg | None = None,
    kind: str = "main",
    db: str | None = None,
) -> Prediction:
    """One subnet's predicted latency on `target` (`hwnas predict`); `subnet` as a `Subnet`,
    its JSON or a mapping of it."""
    from hwnas.search.services.prediction import predict as run_predict

    key = _space_key(db, space, run)
    return run_predict(db, _target(target), _subnet_json(subnet), kind, key)


def predict_many(
    target: Target | str,
    subnets: Sequence[Subnet | Mapping],
    *,
    run: str | None = None,
    space: SpaceArg | None = None,
    kind: str = "main",
    db: str | None = None,
) -> list[float]:
    """Many subnets' predicted latency on `target`, in order (`hwnas predict --subnets`)."""
    from hwnas.search.services.prediction import predict_subnets

    key = _space_key(db, space, run)
    items = [s if isinstance(s, Mapping) else s.to_dict() for s in subnets]
    return predict_subnets(db, _target(target), items, kind, key).tolist()


def import_measurements(
    path: str | Path,
    target: Target | str | None = None,
    *,
    space: SpaceArg | None = None,
    run: str | None = None,
    db: str | None = None,
) -> MeasurementImport:
    """Import latencies measured anywhere (`hwnas measure --import FILE --target NAME --space
    S`): JSON lines `{"subnet": ..., "latency_ms": ...}` of `space`'s subnets (or the space
    `run` trained), into `target` (None: the target each line names); all lines or none."""
    from hwnas.search.services.importing import import_measurements as run_import
    from hwnas.search.services.prediction import space_for
    from hwnas.supernet.space import SearchSpace

    if isinstance(space, SearchSpace):
        chosen = space
    else:
        chosen = space_for(db, None if space is None else str(space), run)
    return run_import(db, path, chosen, None if target is None else _target(target))


def search(
    run: str,
    targets: Sequence[Target | str],
    *,
    budgets: Mapping[str, float] | Sequence[str] | None = None,
    objectives: Sequence[str] = (),
    config: SearchConfig | None = None,
    db: str | None = None,
) -> SearchResult:
    """Search `run`'s accuracy/latency Pareto front on `targets` under hard `budgets` (target
    -> ms, or `TARGET=MS` strings), in closed-loop rounds that measure each front (`hwnas
    search`); every other setting in `config` (`hwnas.SearchConfig`: trials, rounds, sampler,
    workers, ...). Running it again with the same name continues the search."""
    from hwnas.search.search_config import SearchConfig
    from hwnas.search.services.search import parse_problem
    from hwnas.search.services.search import search as run_search

    names = [t if isinstance(t, str) else t.key for t in targets]
    if isinstance(budgets, Mapping):
        limits = [f"{t if isinstance(t, str) else t.key}={ms}" for t, ms in budgets.items()]
    else:
        limits = list(budgets or ())
    problem = parse_problem(names, limits, list(objectives))
    return run_search(run, problem, config or SearchConfig(), db_url=db)


def pareto(search: str, *, db: str | None = None) -> ParetoResult:
    """A search's Pareto front, measured where it was (`hwnas pareto`)."""
    from hwnas.search.services.search import pareto as front

    return front(db, search)


def export(
    out: str | Path,
    *,
    candidate: int | None = None,
    run: str | None = None,
    subnet: Subnet | Mapping | str | None = None,
    precision: str = "fp32",
    int8_io: bool = False,
    threads: int = 1,
    measure: bool = True,
    force: bool = False,
    db: str | None = None,
) -> ExportResult:
    """Export a search's `candidate` (or `run`'s `subnet`) to TFLite at `out` with its proof:
    ops, JAX-vs-LiteRT difference, accuracies, predicted and measured latency (`hwnas
    export`); `precision` fp32, fp16 or int8; the latency check on LiteRT with `threads`
    (`measure=False`: predicted only); `force` replaces an existing file."""
    from hwnas.search.services.export import ExportRequest
    from hwnas.search.services.export import export as run_export

    request = ExportRequest(
        out=str(out), candidate=candidate, run=run,
        subnet=None if subnet is None else _subnet_json(subnet), precision=precision,
        int8_io=int8_io, threads=threads, force=force, measure=measure,
    )  # fmt: skip
    return run_export(db, request)


def report(
    search: str, out: str | Path, *, bench: str | Path | None = None, db: str | None = None
) -> ReportResult:
    """A Markdown report with PNG figures on `search`, written into folder `out` (`hwnas
    report`); `bench`: a folder of `python -m bench` results to include."""
    from hwnas.search.services.report import report as write_report

    return write_report(db, search, out, bench)


def demo(
    folder: str | Path = "hwnas-demo", *, epochs: int | None = None, trials: int | None = None
) -> DemoResult:
    """Every step on the built-in digits, end to end, into `folder` (`hwnas demo`); a second
    call reuses each step's result."""
    from hwnas.search.services.demo import config_from
    from hwnas.search.services.demo import demo as run_demo

    return run_demo(config_from(folder, epochs=epochs, trials=trials))
