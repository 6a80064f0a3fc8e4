"""Targets: a runtime plus the settings that change its speed (its identity).

`cpu` runs the jitted standalone subnet on the host CPU, `gpu` the same on a CUDA device, both
at a batch size (`cpu-b32`; batch 1 is plain `cpu`); `tflite` the converted flatbuffer in the
LiteRT interpreter with XNNPACK, with its thread count and precision as part of the identity
(`tflite-fp32-t1`). An optional device label names the hardware when the same runtime is
measured on several machines (`tflite-int8-t4@pixel`). An `imported` target is any other name
(`pixel7-npu`, `jetson-b8`): hwnas cannot measure it, only learn it from measurements taken
elsewhere (`hwnas measure --import FILE --target NAME`).
Plain Python: the measurement worker imports this without jax or TensorFlow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hwnas.exceptions import HwnasError

KINDS = ("cpu", "gpu", "tflite", "imported")
MEASURABLE = ("cpu", "gpu", "tflite")  # the kinds hwnas runs itself
PRECISIONS = ("fp32", "int8")
MAX_BATCH = 4096
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,30}$")
_BATCH = re.compile(r"^(?P<base>.+?)(?:-b(?P<batch>[1-9]\d*))?$")


class TargetError(HwnasError):
    """An unknown target or setting."""


@dataclass(frozen=True)
class Target:
    kind: str
    threads: int = 1
    precision: str = "fp32"
    device: str = ""
    batch: int = 1
    name: str = ""  # an imported target's name

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TargetError(
                f"unknown target {self.kind!r}; choose one of {', '.join(MEASURABLE)}"
            )
        if self.precision not in PRECISIONS:
            raise TargetError(
                f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}"
            )
        if not 1 <= self.threads <= 256:
            raise TargetError(f"must be between 1 and 256, got {self.threads}", field="threads")
        if not 1 <= self.batch <= MAX_BATCH:
            raise TargetError(
                f"must be between 1 and {MAX_BATCH}, got {self.batch}", field="batch"
            )
        if self.kind != "tflite" and (self.threads != 1 or self.precision != "fp32"):
            raise TargetError(
                "threads and precision are settings of the tflite target only", field="target"
            )
        if self.kind == "tflite" and self.batch != 1:
            raise TargetError(
                "the tflite target runs at batch 1; batch is a setting of cpu and gpu",
                field="batch",
            )
        if self.device and not _LABEL.match(self.device):
            raise TargetError(f"device label {self.device!r}: use letters, digits, '.', '_', '-'")
        self._check_name()

    def _check_name(self) -> None:
        if self.kind != "imported":
            if self.name:
                raise TargetError("only an imported target has a name", field="target")
            return
        reserved = any(self.name == k or self.name.startswith(k + "-") for k in MEASURABLE)
        if reserved or not _LABEL.match(self.name) or self.device:
            raise TargetError(
                f"target name {self.name!r}: use letters, digits, '.', '_', '-', not starting "
                f"with {', '.join(MEASURABLE)} (those are hwnas's own targets)",
                field="target",
            )

    @property
    def measurable(self) -> bool:
        """Whether hwnas can measure this target itself (on this machine or with a worker)."""
        return self.kind in MEASURABLE

    @property
    def key(self) -> str:
        if self.kind == "tflite":
            base = f"tflite-{self.precision}-t{self.threads}"
        else:
            base = self.name if self.kind == "imported" else self.kind
        base += f"-b{self.batch}" if self.batch != 1 else ""
        return f"{base}@{self.device}" if self.device else base

    def settings(self) -> dict:
        return {
            "kind": self.kind,
            "threads": self.threads,
            "precision": self.precision,
            "device": self.device,
            "batch": self.batch,
            "name": self.name,
        }

    @classmethod
    def from_settings(cls, d: dict) -> Target:
        return cls(d["kind"], int(d["threads"]), d["precision"], d.get("device", ""),
                   int(d.get("batch", 1)), d.get("name", ""))  # fmt: skip

    @classmethod
    def parse(cls, text: str) -> Target:
        """A target key as printed (`cpu`, `cpu-b32`, `tflite-int8-t4`, `tflite-fp32-t1@pixel`,
        an imported target's name), or a bare kind (`tflite` = `tflite-fp32-t1`)."""
        full, _, device = text.partition("@")
        m = _BATCH.match(full)
        base, batch = (m.group("base"), int(m.group("batch") or 1)) if m else (full, 1)
        if base in MEASURABLE:
            return cls(base, device=device, batch=batch)
        t = re.fullmatch(r"tflite-(\w+)-t(\d+)", base)
        if t:
            return cls("tflite", int(t.group(2)), t.group(1), device, batch)
        if any(base.startswith(k + "-") for k in MEASURABLE):
            raise TargetError(
                f"unknown target {text!r}; use cpu, gpu (-bBATCH), tflite or "
                "tflite-PRECISION-tTHREADS, or an imported target's name"
            )
        if device:
            raise TargetError(
                f"target {text!r}: only cpu, gpu and tflite take an @device label; an imported "
                f"target's name names its device ({base}-{device})"
            )
        return cls("imported", batch=batch, name=base)
