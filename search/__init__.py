"""`hwnas.search`: the search, the closed loop, the services behind every verb, and the CLI.

The package is also the API verb of the same name: `hwnas.search(run, targets, budgets=...,
config=...)` calls `hwnas.api.search` (a package and a verb named alike would otherwise replace
each other as attributes of `hwnas`, whichever was imported last). `hwnas.api.search` is the
same function, spelled for type checkers.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    """This package, callable as the `search` verb."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run (or continue) a search: `hwnas.api.search`'s arguments and result."""
        from hwnas.api import search

        return search(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
