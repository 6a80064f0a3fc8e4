"""XLA's persistent compilation cache, shared by every hwnas process."""

from __future__ import annotations

import os
from pathlib import Path


def enable_compile_cache() -> None:
    """Persist XLA compilations across processes (every new shape costs seconds on CPU)."""
    import jax

    path = os.environ.get("HWNAS_JAX_CACHE", str(Path.home() / ".cache" / "hwnas" / "jax"))
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
