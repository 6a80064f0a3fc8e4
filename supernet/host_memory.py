"""Host memory for training on CPU: each step reuses the pages the previous step freed.

XLA on CPU allocates an executable's temporaries with malloc when it runs and frees them after:
3.3 GB for the `ofa-mbv3` step at 224 px, batch 32. glibc serves every block over 32 MB with a
fresh `mmap` and hands it back with `munmap`, so every step faulted in and zeroed 3.3 GB of new
pages (7.6 M page faults in 10 steps; ops that write a 32x112x112x96 map ran at 0.4 CPU per
core). `reuse_host_memory` makes malloc serve large blocks from its heap and never trim it, and
turns off JAX's asynchronous CPU dispatch, so a step's temporaries are freed before the next
step's are allocated (with asynchronous dispatch they overlapped and the heap grew to three
steps' worth, 7-10 GB). Measured on 2 cores: 3.0 s a step down to 2.0 s, peak RSS unchanged at
4.1 GB (`bench/host_memory.py`). Transparent huge pages (`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`)
took it to 2.5 s; they only cut the fault count, the zeroing stays.

A synchronous call still releases the GIL, so the loader's threads keep decoding while a step
runs. It is opt-in (`HWNAS_HOST_MEMORY=1`): the heap keeps what evaluation, checkpoints and
compilation free, and a 6-epoch `hwnas train` at 224 px peaked at 8.2 GB with it (goal 8 GB)
even with `release_free_memory` after each epoch; trimming also after each resolution's first
step and before each checkpoint still left a 6-epoch run at 9.0 GB. Other allocators than
glibc's (musl, macOS) are left as they are.
"""

from __future__ import annotations

import ctypes
import logging
import os

logger = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


def reuse_host_memory() -> bool:
    """Keep freed host memory for the next step (glibc) and dispatch CPU steps inline.

    Call before JAX's first computation: once the CPU client exists its dispatch mode is fixed,
    and with asynchronous dispatch a heap that keeps its pages would grow instead. Returns
    whether the allocator was changed (False without `HWNAS_HOST_MEMORY=1`, on other C
    libraries or with JAX started)."""
    if os.environ.get("HWNAS_HOST_MEMORY") != "1":
        return False
    import jax
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        logger.debug("JAX already started: host memory left as it is")
        return False
    libc = _glibc()
    if libc is None:
        return False
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    # -1 is SIZE_MAX to glibc: the heap's free top is never given back.
    settings = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, -1))
    return all([bool(libc.mallopt(p, v)) for p, v in settings])


def release_free_memory() -> None:
    """Give the heap's free pages back to the system (glibc's `malloc_trim`), as after each
    epoch: what compilation, evaluation and checkpoints freed would otherwise stay resident
    beside the steps' temporaries. The next step faults its temporaries in once."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _glibc():
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (present in glibc only)
    except (OSError, AttributeError):
        return None
    return libc
