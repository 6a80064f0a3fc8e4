"""The base of every value a service returns: a frozen dataclass that turns itself into the
JSON object the CLI prints (`--json`) and a Python caller can read field by field.

Field names are the CLI's contract keys (the JSON keys each command promises): a result may add
fields, never drop or rename one. Nested results, subnets (`to_dict`), numpy values, paths,
tuples and mappings all become plain JSON values; a field whose value is None is kept (`null`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def jsonable(value: Any) -> Any:
    """`value` as plain JSON types, recursively."""
    if isinstance(value, Result):
        return value.to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        return jsonable(to_dict() if callable(to_dict) else dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


@dataclasses.dataclass(frozen=True)
class Result:
    """A service's result. Subclasses are frozen dataclasses; `to_json()` gives the command's
    JSON object, one key a field (a subclass whose JSON is shaped otherwise overrides it)."""

    def to_json(self) -> dict[str, Any]:
        return {f.name: jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def __str__(self) -> str:
        return json.dumps(self.to_json(), indent=2)
