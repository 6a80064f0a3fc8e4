"""The one base of the errors a user can cause, and how such an error is shown.

Library code says which setting is at fault (`field`, as the Python parameter is named:
`data_dir`) and what is wrong with it; how the setting was given is the caller's business: the
CLI shows the field as its flag (`--data-dir`), the dashboard and the Python API by name. A
message may name its field where the sentence needs it, as `{field}`
(`HwnasError("{field} must be one of fp32, int8", field="precision")`); otherwise the field
comes first (`data_dir: ...`). Pure Python: the measurement worker imports it on devices that
have nothing else of hwnas.
"""

from __future__ import annotations

FIELD = "{field}"


class HwnasError(ValueError):
    """Bad input from the user: one line, exit status 2 at the CLI, nothing written.

    `field` names the setting at fault (None: no one setting).
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:  # the sentence alone; `shown` puts a field that it omits first
        return self.message.replace(FIELD, self.field or "this setting")


def flag(field: str) -> str:
    """How the CLI spells a field: `data_dir` -> `--data-dir`."""
    return f"--{field.replace('_', '-')}"


def shown(e: BaseException, flags: bool) -> str:
    """The error's message with its field: as a flag (`--data-dir`) or by name (`data_dir`)."""
    field = getattr(e, "field", None)
    message = getattr(e, "message", None)
    if message is None:
        message = str(e)
    if not field:
        return message.replace(FIELD, "this setting")
    name = flag(field) if flags else field
    return message.replace(FIELD, name) if FIELD in message else f"{name}: {message}"
