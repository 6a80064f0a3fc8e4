"""The hardware and software a measurement ran on (recorded with every measurement)."""

from __future__ import annotations

import os
import platform
from importlib import metadata

_PACKAGES = ("numpy", "jax", "jaxlib", "ai-edge-litert")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def fingerprint(gpu_name: str | None = None) -> dict:
    fp = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.system(),
        "node": platform.node(),
        "versions": versions(),
    }
    if gpu_name:
        fp["gpu"] = gpu_name
    return fp
