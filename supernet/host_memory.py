"""Host memory for training on CPU: each step reuses the large blocks the previous step freed.

XLA on CPU allocates an executable's temporaries with malloc when it runs and frees them after:
3.3 GB for the `ofa-mbv3` step at 224 px, batch 32. glibc serves every block over 32 MB with a
fresh `mmap` and hands it back with `munmap`, so every step faulted in and zeroed 3.3 GB of new
pages (822,000 page faults a step; ops that write a 32x112x112x96 map ran at 0.4 CPU a core).
`supernet/native/bigblocks.cc`, loaded in front of glibc's malloc (`LD_PRELOAD`), keeps blocks of
64 MB and more mapped when they are freed and hands them to the next request they hold, keeping
at most one largest block's worth free. A one-process `hwnas train` above 32 px restarts itself
with it (`restart_with_block_cache`, before anything is written) and dispatches CPU steps inline
(`reuse_host_memory`), so a step's temporaries are freed before the next step's are allocated.

Tried before and dropped: keeping large blocks in glibc's heap (`mallopt(M_MMAP_MAX, 0)`): the
steps ran as fast, but small long-lived allocations settled in the freed holes and the heap grew
by a step's temporaries at a time (a 6-epoch 224 px run peaked at 9.0 GB against 5.5 GB).
Transparent huge pages alone (`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`) only cut the fault
count (2.5 s a step against 3.0 s; 2.0 s with the reuse). `HWNAS_HOST_MEMORY=0` turns it off.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).parent / "native" / "bigblocks.cc"
FLAGS = (
    "-O2",
    "-std=c++17",
    "-shared",
    "-fPIC",
    "-fno-exceptions",
    "-fno-rtti",
    "-Wl,--as-needed",
)
RESTARTED = "HWNAS_HOST_MEMORY_RESTARTED"  # set for the restarted process: never restart twice
PRELOAD_BEFORE = "HWNAS_LD_PRELOAD_BEFORE"  # LD_PRELOAD as it was, for the restarted process
_command_line: list[str] | None = None  # this process's own command line, where it may restart


def allow_restart(argv: list[str]) -> None:
    """Say that this process was started as `argv` (a real command line, not a call from
    Python), so training may restart it with the block cache loaded. In the restarted process,
    put the environment back as it was: the processes it starts do not inherit the cache."""
    global _command_line
    _command_line = list(argv)
    if os.environ.get(RESTARTED) and cache_loaded():
        before = os.environ.pop(PRELOAD_BEFORE, "")
        if before:
            os.environ["LD_PRELOAD"] = before
        else:
            os.environ.pop("LD_PRELOAD", None)
        del os.environ[RESTARTED]


def cache_loaded() -> bool:
    """True when `bigblocks.cc` serves this process's large blocks."""
    return _symbol("hwnas_bigblocks_release") is not None


def restart_with_block_cache() -> None:
    """Restart this process (same command line) with the block cache in front of malloc, where
    it may: a real command line (`allow_restart`), glibc, a C++ compiler, `HWNAS_HOST_MEMORY`
    not 0. Returns only where it does not restart. Call before anything is written."""
    if _command_line is None or cache_loaded() or os.environ.get(RESTARTED):
        return
    if os.environ.get("HWNAS_HOST_MEMORY") == "0" or _glibc() is None or sys.argv[0] == "-":
        return  # a script read from stdin could not be read again
    library = block_cache_library()
    if library is None or any(c in str(library) for c in " :"):  # ld.so splits paths there
        return
    before = os.environ.get("LD_PRELOAD", "")
    env = {**os.environ, RESTARTED: "1", PRELOAD_BEFORE: before}
    env["LD_PRELOAD"] = " ".join(filter(None, [str(library), before]))
    logger.debug("restarting with the block cache: %s", library)
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    try:
        os.execve(sys.executable, [sys.executable, *_command_line[1:]], env)
    except OSError as err:
        logger.warning("could not restart with the host memory block cache (%s)", err)


def block_cache_library() -> Path | None:
    """The block cache, built for this machine (None where it cannot be built)."""
    from hwnas.supernet import native

    cxx = native.compiler()
    if cxx is None:
        return None
    try:
        return native.build(SOURCE, FLAGS, cxx).resolve()
    except Exception as err:  # no cache: training runs with malloc as it comes
        logger.warning("host memory block cache unavailable (%s)", err)
        return None


def reuse_host_memory() -> bool:
    """Dispatch CPU steps inline where the block cache is loaded, so that one step's
    temporaries are freed before the next step's are allocated and the same block serves
    both (dispatched asynchronously, two steps' blocks would be kept). Call before JAX's first
    computation: once the CPU client exists its dispatch mode is fixed. Returns whether the
    dispatch was changed."""
    if os.environ.get("HWNAS_HOST_MEMORY") == "0" or not cache_loaded():
        return False
    import jax
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        logger.debug("JAX already started: host memory left as it is")
        return False
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    return True


def release_free_memory() -> None:
    """Give free memory back to the system, as after each epoch: the block cache's free blocks
    and glibc's free heap pages (`malloc_trim`), which compilation, evaluation and checkpoints
    leave. The next step faults its temporaries in once."""
    release = _symbol("hwnas_bigblocks_release")
    if release is not None:
        release()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def block_cache_stats() -> dict[str, int] | None:
    """The block cache's counts (None where it is not loaded): blocks handed out again (hits),
    new mappings (misses), blocks unmapped, bytes kept free and blocks in use."""
    stats = _symbol("hwnas_bigblocks_stats")
    if stats is None:
        return None
    out = (ctypes.c_uint64 * 5)()
    stats(out)
    return dict(zip(("hits", "misses", "unmapped", "kept_bytes", "in_use"), out, strict=True))


def _symbol(name: str):
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def _glibc():
    return ctypes.CDLL(None) if _symbol("gnu_get_libc_version") else None  # glibc's own
