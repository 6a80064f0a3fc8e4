"""hwnas: hardware-aware neural architecture search.

Train one weight-shared supernet, measure latency on your devices, search the accuracy/latency
Pareto front under hard budgets, export the chosen subnet to TFLite:

    import hwnas
    run = hwnas.train("digits", epochs=1)
    hwnas.measure("tflite", run=run.run, n=20)
    hwnas.fit_predictor("tflite", run=run.run)
    found = hwnas.search(run.run, ["tflite"], budgets={"tflite": 0.2},
                         config=hwnas.SearchConfig(trials=50))
    hwnas.export("best.tflite", candidate=found.pareto[0].candidate)

Every verb returns a frozen result whose `to_json()` is the matching CLI command's `--json`
object; bad input raises `hwnas.HwnasError`. docs/python-api.md has the whole tour.

The design card's folders (`search/`, `supernet/`, `latency/`, `db/`, `app/`) install beneath
this one import name as `hwnas.search`, `hwnas.supernet`, ... (setuptools' `package-dir`, see
docs/architecture.md). In a checkout that is not installed (the tests, `python -m bench`, a
device running `python -m hwnas.latency.worker` from a copy of the folders) they sit beside
this folder, and the package's path takes them from there. Nothing heavy is imported here: the
measurement worker runs where only numpy and one runtime are installed, and `hwnas --help`
must stay fast; the types below are imported when first used.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

_HERE = Path(__file__).resolve().parent
if not (_HERE / "latency").is_dir() and (_HERE.parent / "latency" / "__init__.py").is_file():
    __path__.append(str(_HERE.parent))  # a checkout, or a copy: hwnas.latency is ../latency
from hwnas.api import (  # noqa: E402
    demo,
    export,
    fit_predictor,
    import_measurements,
    measure,
    pareto,
    predict,
    predict_many,
    report,
    space,
    train,
)
from hwnas.exceptions import HwnasError  # noqa: E402

if TYPE_CHECKING:
    from hwnas.latency.targets import Target
    from hwnas.search.result import Result
    from hwnas.search.search_config import SearchConfig
    from hwnas.supernet.space import SearchSpace, Subnet

__version__ = "0.1.0"

# The API's argument types, imported on first use (PEP 562).
_LAZY = {
    "SearchConfig": "hwnas.search.search_config",
    "SearchSpace": "hwnas.supernet.space",
    "Subnet": "hwnas.supernet.space",
    "Target": "hwnas.latency.targets",
    "Result": "hwnas.search.result",
}


def __getattr__(name: str) -> Any:
    if name == "search":  # both the package and the verb: the package is callable
        return import_module("hwnas.search")  # (search/__init__.py), imported when first used
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hwnas' has no attribute {name!r}")


__all__ = [
    "HwnasError",
    "Result",
    "SearchConfig",
    "SearchSpace",
    "Subnet",
    "Target",
    "__version__",
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
