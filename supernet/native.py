"""Hand-written CPU kernels, built on first use and registered as XLA FFI targets.

XLA on CPU runs a large-map depthwise convolution and its gradients at 1-2 GMAC/s
(`supernet/depthwise.py`); `native/depthwise.cc` runs them as plain vectorised loops. The source
is compiled once per machine with the system's C++ compiler (`$CXX`, else `c++`) against the
FFI headers jaxlib ships, and the library is kept under `$HWNAS_NATIVE_CACHE` (default
`~/.cache/hwnas/native`), keyed by the source, jaxlib, the compiler and the CPU. Where no
compiler works, or `HWNAS_NATIVE=0`, `available()` is False and the supernet keeps XLA's forms.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).parent / "native" / "depthwise.cc"
MAX_KERNEL = 8  # kMaxKernel in native/depthwise.cc
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC")
TARGETS = {
    "hwnas_depthwise_forward": "HwnasDepthwiseForward",
    "hwnas_depthwise_input_grad": "HwnasDepthwiseInputGrad",
    "hwnas_depthwise_weight_grad": "HwnasDepthwiseWeightGrad",
}


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "hwnas" / "native"
    return Path(os.environ.get("HWNAS_NATIVE_CACHE", default))


def _cpu_id() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    # x86 names its CPU and features "model name" and "flags"; ARM "CPU part" and "Features"
    keys = ("model name", "flags", "CPU implementer", "CPU part", "Features")
    keep = [ln for ln in lines if ln.startswith(keys)]
    return "\n".join([platform.machine(), *dict.fromkeys(keep)])


def compiler() -> list[str] | None:
    """The C++ compiler command (`$CXX` may hold a launcher, as in "ccache g++")."""
    cmd = shlex.split(os.environ.get("CXX", "c++"))
    return cmd if cmd and shutil.which(cmd[0]) else None


def build(source: Path, flags: tuple[str, ...], cxx: list[str]) -> Path:
    """Compile `source` into a shared library (once per source, flags, jaxlib, compiler and
    CPU: the library is built for this CPU) and return the library."""
    import jaxlib

    version = subprocess.run([*cxx, "--version"], capture_output=True, text=True).stdout
    parts = [source.read_text(), shlex.join(flags), jaxlib.__version__, version, _cpu_id()]
    key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
    lib = cache_dir() / f"{source.stem}-{key}.so"
    if lib.exists():
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
        out = Path(tmp) / lib.name
        done = subprocess.run(
            [*cxx, *flags, str(source), "-o", str(out)], capture_output=True, text=True
        )
        if done.returncode:
            errors = [ln for ln in done.stderr.splitlines() if "error" in ln.lower()]
            raise RuntimeError((errors or done.stderr.splitlines() or ["failed"])[0].strip())
        os.replace(out, lib)  # atomic: concurrent builders each write their own temp file
    return lib


@cache
def available() -> bool:
    """True when the native kernels are built, loaded and registered with XLA."""
    if os.environ.get("HWNAS_NATIVE", "1") == "0":
        return False
    cxx = compiler()
    if cxx is None:
        log.warning("no C++ compiler found: large-map depthwise layers use XLA's slower forms")
        return False
    import jax.ffi

    try:
        library = ctypes.CDLL(str(build(SOURCE, (*FLAGS, "-I", jax.ffi.include_dir()), cxx)))
    except Exception as err:  # any failure to build or load leaves XLA's forms in place
        log.warning("native kernels unavailable (%s): depthwise layers use XLA's forms", err)
        return False

    for name, symbol in TARGETS.items():
        capsule = jax.ffi.pycapsule(getattr(library, symbol))
        jax.ffi.register_ffi_target(name, capsule, platform="cpu")
    return True
