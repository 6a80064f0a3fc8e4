"""The `hwnas` command line: Typer commands that parse flags and call the services.

No logic lives here that a test or the dashboard would need; each command is a few lines that
call a function of `hwnas.search.services` and print its result.
"""

from hwnas.search.cli.entry import main

__all__ = ["main"]
