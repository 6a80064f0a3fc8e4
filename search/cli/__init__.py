"""The `hwnas` command line: Typer commands that parse flags and call the services.

No logic lives here that a test or the dashboard would need; each command is a few lines that
call a function of `search.services` and print its result.
"""

from search.cli.main import main

__all__ = ["main"]
