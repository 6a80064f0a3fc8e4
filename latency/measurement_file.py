"""The measurement file: latencies taken anywhere, as JSON lines, one measurement a line.

    {"subnet": {"resolution": 224, "depths": [...], "kernels": [...], "expands": [...]},
     "latency_ms": 12.3, "batch": 1, "spread": 0.4, "target": "pixel7"}

`latency_ms` is required when importing (`hwnas measure --import FILE --target NAME --space S`);
`batch` (images per call, default the target's), `spread` (e.g. the IQR of the calls, in ms)
and `target` (must be the target imported into, or name it when the command does not) are
optional; other keys are kept out of the way (ignored). `hwnas predict --subnets FILE` reads
the same lines without `latency_ms`.

Parsing is all or nothing: the first bad line is reported with its number and what is wrong.
Plain Python and numpy: no database, no runtime.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.latency.features import Encoded, SpaceTables
from hwnas.latency.targets import Target, TargetError
from hwnas.supernet.space import SearchSpace, SpaceError, Subnet


class MeasurementFileError(ValueError):
    """A bad line of a measurement file: `line` (1-based) and what is wrong with it."""

    def __init__(self, path: Path, line: int, what: str) -> None:
        super().__init__(f"{path} line {line}: {what}")
        self.line, self.what = line, what


@dataclass(frozen=True)
class Imported:
    """One line of a measurement file, checked."""

    line: int
    target: Target
    subnet: Subnet
    latency_ms: float
    spread_ms: float | None


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(number, text) of every non-blank line."""
    try:
        with open(path, encoding="utf-8") as f:
            for number, text in enumerate(f, 1):
                if text.strip():
                    yield number, text
    except UnicodeDecodeError:
        raise MeasurementFileError(path, 0, "not a UTF-8 text file") from None


def _object(path: Path, number: int, text: str) -> dict[str, Any]:
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise MeasurementFileError(path, number, f"not JSON ({e.msg})") from None
    if not isinstance(d, dict):
        raise MeasurementFileError(path, number, "not a JSON object")
    return d


def _number(d: dict[str, Any], key: str) -> float | None:
    """The value of `key` as a float (None where absent); ValueError if not a number."""
    if key not in d or (d[key] is None and key != "latency_ms"):
        return None
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ValueError(f"{key} must be a number, got {json.dumps(v)}")
    try:
        return float(v)
    except OverflowError:
        raise ValueError(f"{key} is out of range, got {v}") from None


def _latency(d: dict[str, Any]) -> float:
    if "latency_ms" not in d:
        raise ValueError("latency_ms is missing")
    ms = _number(d, "latency_ms")
    if ms is None or not math.isfinite(ms) or ms <= 0:
        raise ValueError(
            f"latency_ms must be a positive number, got {json.dumps(d['latency_ms'])}"
        )
    return ms


def check_foreign(target: Target) -> None:
    """ValueError where `target` is one hwnas measures on this machine (cpu, gpu, tflite
    without a device label): imported latencies would mix with this machine's, and serve as
    its drift anchors."""
    if target.measurable and not target.device:
        raise ValueError(
            f"target {target.key} holds this machine's own measurements; import another "
            f"machine's as {target.key}@LABEL, or under a name of their own"
        )


def _target(d: dict[str, Any], target: Target | None, local: bool) -> Target:
    named = d.get("target")
    if named is None:
        if target is None:
            raise ValueError('the line names no target; give --target NAME or a "target" key')
        return target
    try:
        t = Target.parse(str(named))
    except TargetError as e:
        raise ValueError(f"target {named!r}: {e}") from None
    if target is not None and t.key != target.key:
        raise ValueError(f"the line is of target {t.key}, not {target.key}")
    if not local:
        check_foreign(t)
    return t


def _batch(d: dict[str, Any], target: Target) -> None:
    if "batch" not in d:
        return
    b = d["batch"]
    if isinstance(b, bool) or not isinstance(b, int) or b < 1:
        raise ValueError(f"batch must be a positive integer, got {json.dumps(b)}")
    if b == target.batch:
        return
    try:
        hint = f"; import it into target {dataclasses.replace(target, batch=b).key}"
    except TargetError as e:
        hint = f"; {e}"
    raise ValueError(f"batch {b} does not match target {target.key} (batch {target.batch}){hint}")


def _spread(d: dict[str, Any]) -> float | None:
    s = _number(d, "spread")
    if s is not None and (not math.isfinite(s) or s < 0):
        raise ValueError(f"spread must be a non-negative number, got {json.dumps(d['spread'])}")
    return s


def _subnet(d: dict[str, Any], space: SearchSpace) -> Subnet:
    if "subnet" not in d:
        raise ValueError("subnet is missing")
    try:
        return space.subnet_from_dict(d["subnet"])
    except SpaceError as e:
        raise ValueError(f"not a subnet of space {space.name}: {e}") from None


def parse_line(
    d: dict[str, Any], space: SearchSpace, target: Target | None, local: bool = False
) -> Imported:
    """One measurement checked (ValueError says what is wrong); `line` is left 0. `local`:
    lines may name this machine's own targets (a bench's file of its own measurements)."""
    subnet = _subnet(d, space)
    ms = _latency(d)
    t = _target(d, target, local)
    _batch(d, t)
    return Imported(0, t, subnet, ms, _spread(d))


def read_measurements(
    path: str | Path, space: SearchSpace, target: Target | None = None, local: bool = False
) -> list[Imported]:
    """Every measurement of the file, checked; the first bad line raises
    `MeasurementFileError` naming it. `target`: the target imported into (lines that name
    another are bad); None: every line names its own. `local`: as `parse_line`."""
    path = Path(path)
    out = []
    for number, text in _lines(path):
        d = _object(path, number, text)
        try:
            m = parse_line(d, space, target, local)
        except ValueError as e:
            raise MeasurementFileError(path, number, str(e)) from None
        out.append(Imported(number, m.target, m.subnet, m.latency_ms, m.spread_ms))
    return out


# ---- many subnets at once (`hwnas predict --subnets`) -----------------------------------------


def encode_subnet_lines(path: str | Path, space: SearchSpace, t: SpaceTables) -> Encoded:
    """The subnets of every line of `path` encoded for the predictors, in order, checked as
    arrays (100,000 lines in about a second): where anything looks unusual, the lines are
    checked one by one as subnets, and the first bad one raises `MeasurementFileError`."""
    path = Path(path)
    numbered = list(_lines(path))
    if not numbered:
        raise MeasurementFileError(path, 0, "holds no subnet lines")
    text = "[" + ",".join(line for _, line in numbered) + "]"
    enc = None
    if "true" not in text and "false" not in text:  # JSON booleans would pass as 1 and 0
        try:
            rows = json.loads(text)
            if len(rows) == len(numbered):  # one object a line, not two
                enc = _encode_rows(rows, space, t)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            enc = None
    return enc if enc is not None else t.encode(_one_by_one(path, numbered, space))


def _one_by_one(path: Path, numbered: list[tuple[int, str]], space: SearchSpace) -> list[Subnet]:
    out = []
    for number, text in numbered:
        d = _object(path, number, text)
        try:
            out.append(_subnet(d, space))
        except ValueError as e:
            raise MeasurementFileError(path, number, str(e)) from None
    return out


def _encode_rows(rows: list[Any], space: SearchSpace, t: SpaceTables) -> Encoded | None:
    """`rows` (JSON objects with a `subnet`) as index arrays, or None if any is not a subnet of
    the space (the caller then finds which)."""
    subs = [r["subnet"] for r in rows]
    if not all(type(s) is dict and len(s) == 4 for s in subs):
        return None
    r = np.asarray([s["resolution"] for s in subs])
    d = np.asarray([s["depths"] for s in subs])
    k = np.asarray([s["kernels"] for s in subs])
    e = np.asarray([s["expands"] for s in subs])
    n, m = len(subs), space.max_depth
    shapes = (
        (r, (n,)),
        (d, (n, space.n_stages)),
        (k, (n, space.n_slots)),
        (e, (n, space.n_slots)),
    )
    if any(a.dtype.kind != "i" or a.shape != shape for a, shape in shapes):
        return None
    active = np.arange(space.n_slots)[None] % m < np.repeat(d, m, axis=1)
    legal_k, legal_e = np.asarray(space.kernels), np.asarray(space.expands)
    ok = np.isin(r, space.resolutions) & np.isin(d, space.depths).all(1)
    ok &= np.where(active, np.isin(k, legal_k), np.isin(k, [0, *legal_k])).all(1)
    ok &= np.where(active, np.isin(e, legal_e), np.isin(e, [0, *legal_e])).all(1)
    if not ok.all():
        return None
    k_idx = np.where(active, _position(legal_k, k), -1)
    e_idx = np.where(active, _position(legal_e, e), -1)
    return Encoded(_position(np.asarray(space.resolutions), r), k_idx, e_idx)


def _position(values: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The index in `values` of each element of `x` (values not found give any index)."""
    order = np.argsort(values)
    return order[np.minimum(np.searchsorted(values, x, sorter=order), len(values) - 1)]
