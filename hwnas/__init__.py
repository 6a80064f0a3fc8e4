"""hwnas: hardware-aware neural architecture search.

The design card's folders (`search/`, `supernet/`, `latency/`, `db/`, `app/`) install beneath
this one import name as `hwnas.search`, `hwnas.supernet`, ... (setuptools' `package-dir`, see
docs/architecture.md). In a checkout that is not installed (the tests, `python -m bench`, a
device running `python -m hwnas.latency.worker` from a copy of the folders) they sit beside
this folder, and the package's path takes them from there.

Nothing heavy is imported here: the measurement worker runs where only numpy and one runtime
are installed, and `hwnas --help` must stay fast.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent
if not (_HERE / "supernet").is_dir() and (_HERE.parent / "supernet" / "__init__.py").is_file():
    __path__.append(str(_HERE.parent))  # a checkout: hwnas.search is ../search

from hwnas.exceptions import HwnasError  # noqa: E402

__version__ = "0.1.0"
__all__ = ["HwnasError", "__version__"]
