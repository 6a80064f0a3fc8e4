"""The `hwnas` command line: Typer commands that parse flags, call the Python API
(`hwnas/api.py`; `train` and `measure` their services, for their expert settings) and print.

No logic lives here that a test or the dashboard would need; each command is a few lines.
"""

from hwnas.search.cli.entry import main

__all__ = ["main"]
