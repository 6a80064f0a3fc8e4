"""The optional parts of hwnas, installed as extras, and the one-line error of a missing one.

`pip install hwnas` (the core) trains, measures the `cpu` target, fits predictors, searches and
predicts. The heavy parts are extras (`pyproject.toml` lists their packages):

- `export`: TensorFlow (to convert a subnet to TFLite) and LiteRT (to run it): `hwnas export`,
  the `tflite` target, `hwnas demo`;
- `dashboard`: Streamlit, Plotly and pandas: `hwnas dashboard`;
- `report`: matplotlib: `hwnas report`'s figures;
- `postgres`: psycopg, the driver of a `postgresql+psycopg://` database;
- `gpu`: JAX's CUDA build, for the `gpu` target and training on a GPU.

`requirements.txt` installs every one of them. Pure Python, like `exceptions`: the measurement
worker imports it on devices that have nothing else of hwnas.
"""

from __future__ import annotations

import importlib.util
import sys

from hwnas.exceptions import HwnasError

EXTRAS: dict[str, tuple[str, ...]] = {
    "export": ("tensorflow", "ai_edge_litert"),
    "dashboard": ("streamlit", "plotly", "pandas"),
    "report": ("matplotlib",),
    "postgres": ("psycopg",),
}


class MissingExtra(HwnasError):
    """A command needs an extra that is not installed (exit status 2, like bad input)."""


def missing(extra: str) -> list[str]:
    """The modules of `extra` that cannot be imported here."""
    return [m for m in EXTRAS[extra] if not _importable(m)]


def _importable(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None  # None: blocked, as `import` treats it
    return importlib.util.find_spec(module) is not None


def require(extra: str, what: str) -> None:
    """Raise `MissingExtra` naming the extra to install when `what` cannot run here."""
    absent = missing(extra)
    if absent:
        raise MissingExtra(
            f"{what} needs hwnas's {extra} extra ({', '.join(absent)} not installed); "
            f"install it with: pip install 'hwnas[{extra}]'"
        )
