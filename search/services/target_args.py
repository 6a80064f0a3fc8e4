"""A target as the CLI and the dashboard name it: a kind with its settings, or a full key."""

from __future__ import annotations

from hwnas.exceptions import FIELD
from hwnas.latency.targets import MEASURABLE, Target, TargetError
from hwnas.search.output import UserError


def import_hint(key: str, space: str = "S") -> str:
    """How a target hwnas cannot measure here gets its measurements: an import."""
    return f"`hwnas measure --import FILE --target {key} --space {space}`"


def parse_target(
    kind: str, threads: int = 1, precision: str = "fp32", device: str = "", batch: int = 1
) -> Target:
    """A target from its kind and settings, or from a full key (`tflite-int8-t4@pixel`,
    `cpu-b32`, an imported target's name)."""
    full = kind not in MEASURABLE
    try:
        return Target.parse(kind) if full else Target(kind, threads, precision, device, batch)
    except TargetError as e:
        if full:  # a full key: its settings are in the target itself
            raise UserError(f"{FIELD} {kind}: {e}", field="target") from None
        raise
