"""Errors a user causes in latency settings, naming the setting at fault, and how any such
error (these, `supernet.errors.FieldError`) is shown. Pure Python: the job-file worker imports
it on devices that have nothing of hwnas but `latency/`."""

from __future__ import annotations


class SettingError(ValueError):
    """Bad input; `field` names the setting at fault (None: no one setting)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def shown(e: BaseException, flags: bool) -> str:
    """The error's message, its field first: as a flag (`--data-dir: ...`) or by name."""
    field = getattr(e, "field", None)
    if not field:
        return str(e)
    return f"--{field.replace('_', '-')}: {e}" if flags else f"{field}: {e}"
