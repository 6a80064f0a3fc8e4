"""Targets: a runtime plus the settings that change its speed (its identity).

`cpu` runs the jitted standalone subnet on the host CPU at batch 1, `gpu` the same on a CUDA
device, `tflite` the converted flatbuffer in the LiteRT interpreter with XNNPACK, with its
thread count and precision as part of the identity (`tflite-fp32-t1`). An optional device label
names the hardware when the same runtime is measured on several machines (`tflite-int8-t4@pixel`).
Plain Python: the measurement worker imports this without jax or TensorFlow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hwnas.exceptions import HwnasError

KINDS = ("cpu", "gpu", "tflite")
PRECISIONS = ("fp32", "int8")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,30}$")


class TargetError(HwnasError):
    """An unknown target or setting."""


@dataclass(frozen=True)
class Target:
    kind: str
    threads: int = 1
    precision: str = "fp32"
    device: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TargetError(f"unknown target {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.precision not in PRECISIONS:
            raise TargetError(
                f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}"
            )
        if not 1 <= self.threads <= 256:
            raise TargetError(f"must be between 1 and 256, got {self.threads}", field="threads")
        if self.kind != "tflite" and (self.threads != 1 or self.precision != "fp32"):
            raise TargetError(
                "threads and precision are settings of the tflite target only", field="target"
            )
        if self.device and not _LABEL.match(self.device):
            raise TargetError(f"device label {self.device!r}: use letters, digits, '.', '_', '-'")

    @property
    def key(self) -> str:
        base = self.kind if self.kind != "tflite" else f"tflite-{self.precision}-t{self.threads}"
        return f"{base}@{self.device}" if self.device else base

    def settings(self) -> dict:
        return {
            "kind": self.kind,
            "threads": self.threads,
            "precision": self.precision,
            "device": self.device,
        }

    @classmethod
    def from_settings(cls, d: dict) -> Target:
        return cls(d["kind"], int(d["threads"]), d["precision"], d.get("device", ""))

    @classmethod
    def parse(cls, text: str) -> Target:
        """A target key as printed (`cpu`, `tflite-int8-t4`, `tflite-fp32-t1@pixel`), or a bare
        kind (`tflite` = `tflite-fp32-t1`)."""
        base, _, device = text.partition("@")
        if base in KINDS:
            return cls(base, device=device)
        m = re.fullmatch(r"tflite-(\w+)-t(\d+)", base)
        if not m:
            raise TargetError(
                f"unknown target {text!r}; use cpu, gpu, tflite or tflite-PRECISION-tTHREADS"
            )
        return cls("tflite", int(m.group(2)), m.group(1), device)
