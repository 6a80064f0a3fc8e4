"""The native CPU kernels: built once per machine and cached, refused kernels are one clear
error, and without a compiler the supernet keeps XLA's forms (saying so once)."""

from __future__ import annotations

import os
import subprocess
import sys

import jax.numpy as jnp
import pytest

from hwnas.supernet import depthwise as dw
from hwnas.supernet import native

pytestmark = pytest.mark.skipif(not native.available(), reason="no C++ compiler here")


def test_the_library_is_built_once_and_then_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("HWNAS_NATIVE_CACHE", str(tmp_path))
    cxx, flags = native.compiler(), ("-O1", "-shared", "-fPIC")
    source = tmp_path.parent / f"{tmp_path.name}-one.cc"
    source.write_text('extern "C" int hwnas_one() { return 1; }\n')
    first = native.build(source, flags, cxx)
    built = first.stat().st_mtime_ns
    assert first.parent == tmp_path and first.name.startswith(f"{source.stem}-")
    assert first.suffix == ".so"
    assert native.build(source, flags, cxx) == first
    assert first.stat().st_mtime_ns == built
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary left behind


def test_a_kernel_wider_than_the_native_limit_is_refused():
    k = native.MAX_KERNEL + 1
    x, w = jnp.ones((1, 12, 12, 4)), jnp.ones((k, k, 4))
    with pytest.raises(ValueError, match="kernels up to"):
        dw.depthwise_native(x, w, 1)
    assert dw.choose(12, 12, "cpu", kernel=k) != "native"
    assert dw.depthwise(x, w, 1).shape == (1, 12, 12, 4)  # the rule picked an XLA form


def test_without_a_compiler_the_supernet_keeps_xlas_forms(tmp_path):
    code = (
        "from supernet import depthwise, native; "
        "print(native.available(), depthwise.choose(56, 56, 'cpu'), depthwise.choose(7, 7, 'cpu'))"
    )
    env = {
        **os.environ,
        "CXX": str(tmp_path / "no-such-compiler"),
        "HWNAS_NATIVE_CACHE": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["False", "shift", "matmul"]
    assert "no C++ compiler found" in done.stderr
    assert not list(tmp_path.iterdir())  # nothing built, nothing written
