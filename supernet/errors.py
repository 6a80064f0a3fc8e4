"""Errors a user causes, naming the setting at fault.

Library code says which setting (`field`, as the Python parameter is named: `data_dir`) and
what is wrong with it; how the setting is given is the caller's business: the CLI shows the
field as its flag (`--data-dir`), the dashboard as the field's name (`latency.errors.shown`).
"""

from __future__ import annotations


class FieldError(ValueError):
    """Bad input; `field` names the setting at fault (None: no one setting)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field
