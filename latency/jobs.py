"""The job and result files exchanged with a measurement worker (JSON lines, never pickle).

A job line names its target, the subnet (for the record) and a payload the worker can run with
only numpy plus the target's runtime: for `cpu`/`gpu` a serialized `jax.export` module (the
standalone subnet with its weights as arguments), for `tflite` a `.tflite` file beside the job
file, checked by its sha256. A result line carries the job's id, the protocol's statistics and
the fingerprint of the machine that measured it. Parsing is strict: the first bad line is
reported with its number and nothing of the file is used.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hwnas.latency.targets import Target, TargetError

JOB_FORMAT = "hwnas-latency-job/1"
# A job at a batch size other than 1: a worker older than batch sizes would drop the batch and
# time batch 1 under the batched target's key, so such jobs carry a format it refuses.
JOB_FORMAT_BATCH = "hwnas-latency-job/2"
RESULT_FORMAT = "hwnas-latency-result/1"
STAT_KEYS = ("median_ms", "cv", "iqr_ms", "n_reps")


class JobFileError(ValueError):
    """A malformed or foreign line in a job or result file."""


@dataclass(frozen=True)
class Job:
    id: str
    target: Target
    subnet_key: str
    subnet: dict
    kind: str  # "subnet" or "block" (one layer, for lookup tables)
    payload: dict
    run: str = ""  # the supernet run whose weights the model carries ("" for a space alone)
    space: str = ""  # the key of the subnet's space (`SearchSpace.key`)
    weights: str = "trained"  # "trained" (the run's) or "init" (int8: synthetic calibration)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": JOB_FORMAT if self.target.batch == 1 else JOB_FORMAT_BATCH,
                "id": self.id,
                "run": self.run,
                "space": self.space,
                "weights": self.weights,
                "target": self.target.settings(),
                "subnet_key": self.subnet_key,
                "subnet": self.subnet,
                "kind": self.kind,
                "payload": self.payload,
            }
        )


@dataclass(frozen=True)
class Result:
    job: str
    target: Target
    subnet_key: str
    subnet: dict
    kind: str
    stats: dict
    fingerprint: dict
    run: str = ""
    space: str = ""
    weights: str = "trained"

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": RESULT_FORMAT,
                "job": self.job,
                "run": self.run,
                "space": self.space,
                "weights": self.weights,
                "target": self.target.settings(),
                "subnet_key": self.subnet_key,
                "subnet": self.subnet,
                "kind": self.kind,
                "stats": self.stats,
                "fingerprint": self.fingerprint,
            }
        )


def _require(d: dict, key: str, kind: type | tuple[type, ...]) -> Any:
    if key not in d:
        raise JobFileError(f"missing key {key!r}")
    if not isinstance(d[key], kind) or (isinstance(d[key], bool) and kind is not bool):
        raise JobFileError(f"key {key!r} has the wrong type")
    return d[key]


def _object(line: str, *formats: str) -> dict:
    try:
        d = json.loads(line)
    except json.JSONDecodeError as e:
        raise JobFileError(f"not JSON ({e.msg})") from None
    if not isinstance(d, dict) or d.get("format") not in formats:
        raise JobFileError(f"not a {' or '.join(formats)} line")
    return d


def _target(d: dict) -> Target:
    t = _require(d, "target", dict)
    try:
        return Target.from_settings(t)
    except (KeyError, TypeError, ValueError, TargetError) as e:
        raise JobFileError(f"bad target: {e}") from None


def parse_job(line: str) -> Job:
    d = _object(line, JOB_FORMAT, JOB_FORMAT_BATCH)
    payload = _require(d, "payload", dict)
    if payload.get("type") not in ("jax-export", "tflite"):
        raise JobFileError("payload type must be jax-export or tflite")
    return Job(
        _require(d, "id", str),
        _target(d),
        _require(d, "subnet_key", str),
        _require(d, "subnet", dict),
        _require(d, "kind", str),
        payload,
        *_origin(d),
    )


def parse_result(line: str) -> Result:
    d = _object(line, RESULT_FORMAT)
    stats = _require(d, "stats", dict)
    for k in STAT_KEYS:
        v = _require(stats, k, (int, float))
        if not v >= 0 or v != v:
            raise JobFileError(f"stats.{k} must be a non-negative number")
    if stats["median_ms"] <= 0:
        raise JobFileError("stats.median_ms must be positive")
    kind = _require(d, "kind", str)
    if kind not in ("subnet", "block"):
        raise JobFileError("kind must be subnet or block")
    return Result(
        _require(d, "job", str),
        _target(d),
        _require(d, "subnet_key", str),
        _require(d, "subnet", dict),
        kind,
        stats,
        _require(d, "fingerprint", dict),
        *_origin(d),
    )


def _origin(d: dict) -> tuple[str, str, str]:
    """(run, space key, weights) of a line; files from before spaces were recorded say
    neither space nor weights (their models always carried a run's trained weights)."""
    weights = str(d.get("weights", "trained"))
    if weights not in ("trained", "init"):
        raise JobFileError("weights must be trained or init")
    return str(d.get("run", "")), str(d.get("space", "")), weights


T = TypeVar("T")


def read_lines(path: str | Path, parse: Callable[[str], T]) -> list[T]:
    """Parse every non-empty line of `path`; the first bad one raises with its line number."""
    out = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                out.append(parse(line))
            except JobFileError as e:
                raise JobFileError(f"{path} line {number}: {e}") from None
    return out
