"""How every command reports: human text or one JSON line on stdout, errors as one line.

Progress bars and logs go to stderr so that `--json` output stays machine-readable: the last
line on stdout is one JSON object.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from hwnas.exceptions import HwnasError
from hwnas.search.result import Result

EXIT_USER_ERROR = 2


class UserError(HwnasError):
    """Bad input from the user: reported as one line, exit status 2, nothing written."""


def emit(result: Result, as_json: bool, human: str | None = None) -> None:
    """Print a command's result: its JSON object as one line with `as_json` (plain JSON
    values: `Result.to_json`), else readable text."""
    data = result.to_json()
    if as_json:
        sys.stdout.write(json.dumps(data, sort_keys=False) + "\n")
    else:
        sys.stdout.write((human if human is not None else _pretty(data)) + "\n")
    sys.stdout.flush()


def _pretty(result: dict[str, Any], indent: int = 0) -> str:
    lines = []
    pad = "  " * indent
    for key, value in result.items():
        if isinstance(value, dict) and value:
            lines.append(f"{pad}{key}:")
            lines.append(_pretty(value, indent + 1))
        else:
            text = json.dumps(value) if not isinstance(value, str) else value
            lines.append(f"{pad}{key}: {text}")
    return "\n".join(lines)


def fail(message: str) -> None:
    """Print one error line to stderr (the caller exits with status 2)."""
    first = " ".join(str(message).split())
    sys.stderr.write(f"hwnas: error: {first}\n")
    sys.stderr.flush()


class _Stderr(logging.Handler):
    """Each record as one line on whatever `sys.stderr` is when it is logged."""

    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(self.format(record) + "\n")
        sys.stderr.flush()


def show_logs() -> None:
    """Show the progress hwnas's services log (`logging.getLogger(__name__)` under `hwnas`) as
    plain lines on stderr; what the CLI does first. Library users configure `logging`."""
    logger = logging.getLogger("hwnas")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        logger.addHandler(_Stderr())
    logger.setLevel(logging.INFO)
    logger.propagate = False


def is_user_error(e: BaseException) -> bool:
    """Whether `e` is the user's doing (one line, exit 2) rather than a bug (a traceback)."""
    return isinstance(e, HwnasError)
