"""Host memory for training on CPU: each step reuses the large blocks the previous step freed.

XLA on CPU allocates an executable's temporaries with malloc when it runs and frees them after:
3.3 GB for the `ofa-mbv3` step at 224 px, batch 32. glibc serves every block over 32 MB with a
fresh `mmap` and hands it back with `munmap`, so every step faulted in and zeroed 3.3 GB of new
pages (822,000 page faults a step; ops that write a 32x112x112x96 map ran at 0.4 CPU a core).

mimalloc keeps freed blocks mapped and hands them to the next request they hold. It comes from
PyPI (`cmeel-mimalloc`, a dependency on Linux: wheels for x86_64 and aarch64). A one-process
`hwnas train` above 32 px restarts itself with it loaded in front of glibc's malloc
(`LD_PRELOAD`, before anything is written: `restart_with_allocator`) and dispatches CPU steps
inline (`reuse_host_memory`), so a step's temporaries are freed before the next step's are
allocated. A process already started with jemalloc, tcmalloc or mimalloc preloaded keeps it and
gets the inline dispatch too. `HWNAS_HOST_MEMORY=0` turns both off.

Chosen by measurement (`bench/host_memory.py`, `bench/allocator_train.py`; figures in
docs/supernet.md): against glibc, a home-made block cache (`bigblocks`, deleted after commit
7e1b2f5: it was not 10% faster than the best library), jemalloc (tuned until it stopped
faulting), tcmalloc and Debian's older mimalloc 2.0. jemalloc and tcmalloc trained 4-6% faster
but peaked 0.8 and 2.5 GB higher, and come from the system's packages, not PyPI.

Never on an accelerator: where JAX may pick a GPU or TPU (`accelerator_possible`), training
neither restarts nor changes the dispatch; an accelerator's steps do not allocate on the host.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

DISTRIBUTION = "cmeel-mimalloc"  # PyPI's build of mimalloc, preloadable
LIBRARY = "cmeel.prefix/lib/libmimalloc.so"  # inside that distribution
RESTARTED = "HWNAS_HOST_MEMORY_RESTARTED"  # set for the restarted process: never restart twice
PRELOAD_BEFORE = "HWNAS_LD_PRELOAD_BEFORE"  # LD_PRELOAD as it was, for the restarted process
_command_line: list[str] | None = None  # this process's own command line, where it may restart

# a symbol that only this allocator defines -> its name
KEEPERS = {"mi_malloc": "mimalloc", "mallctl": "jemalloc", "tc_malloc": "tcmalloc"}


def allow_restart(argv: list[str]) -> None:
    """Say that this process was started as `argv` (a real command line, not a call from
    Python), so training may restart it with the allocator loaded. In the restarted process,
    put the environment back as it was: the processes it starts do not inherit it."""
    global _command_line
    _command_line = list(argv)
    if os.environ.get(RESTARTED) and block_keeper():
        before = os.environ.pop(PRELOAD_BEFORE, "")
        if before:
            os.environ["LD_PRELOAD"] = before
        else:
            os.environ.pop("LD_PRELOAD", None)
        del os.environ[RESTARTED]


def block_keeper() -> str | None:
    """The allocator in front of glibc's malloc that keeps freed large blocks for reuse, where
    one is loaded: mimalloc, jemalloc or tcmalloc."""
    return next((name for sym, name in KEEPERS.items() if _symbol(sym) is not None), None)


def accelerator_possible() -> bool:
    """Whether JAX may pick a GPU or TPU here, found without starting it: `JAX_PLATFORMS` not
    limited to cpu and a JAX plugin installed (jax[cuda12] and the like install one)."""
    platforms = os.environ.get("JAX_PLATFORMS", "").strip().lower()
    if platforms and set(platforms.split(",")) <= {"cpu"}:
        return False
    from importlib.metadata import entry_points
    from importlib.util import find_spec

    return bool(entry_points(group="jax_plugins")) or find_spec("jax_plugins") is not None


def allocator_library() -> Path | None:
    """mimalloc's shared library as `cmeel-mimalloc` installed it (None: not installed)."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        path = Path(str(distribution(DISTRIBUTION).locate_file(LIBRARY)))
    except PackageNotFoundError:
        return None
    return path.resolve() if path.exists() else None


def restart_with_allocator() -> None:
    """Restart this process (same command line) with mimalloc in front of malloc, where it
    may: a real command line (`allow_restart`), glibc, no accelerator, the library installed,
    no block-keeping allocator loaded already, `HWNAS_HOST_MEMORY` not 0. Returns only where
    it does not restart. Call before anything is written."""
    if _command_line is None or block_keeper() or os.environ.get(RESTARTED):
        return
    if os.environ.get("HWNAS_HOST_MEMORY") == "0" or _glibc() is None or sys.argv[0] == "-":
        return  # a script read from stdin could not be read again
    if accelerator_possible():
        return
    library = allocator_library()
    if library is None or any(c in str(library) for c in " :"):  # ld.so splits paths there
        return
    before = os.environ.get("LD_PRELOAD", "")
    env = {**os.environ, RESTARTED: "1", PRELOAD_BEFORE: before}
    env["LD_PRELOAD"] = " ".join(filter(None, [str(library), before]))
    logger.debug("restarting with %s", library)
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    try:
        os.execve(sys.executable, [sys.executable, *_command_line[1:]], env)
    except OSError as err:
        logger.warning("could not restart with mimalloc (%s)", err)


def reuse_host_memory() -> bool:
    """Dispatch CPU steps inline where a block-keeping allocator is loaded, so that one step's
    temporaries are freed before the next step's are allocated and the same blocks serve
    both (dispatched asynchronously, two steps' blocks would be kept). Call before JAX's first
    computation: once the CPU client exists its dispatch mode is fixed. Returns whether the
    dispatch was changed."""
    if os.environ.get("HWNAS_HOST_MEMORY") == "0" or not block_keeper():
        return False
    import jax
    from jax._src import xla_bridge

    if xla_bridge.backends_are_initialized():
        logger.debug("JAX already started: host memory left as it is")
        return False
    if accelerator_possible():
        return False
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    return True


def release_free_memory() -> None:
    """Give free memory back to the system, as after each epoch: the allocator's free pages
    (mimalloc's `mi_collect`, jemalloc's purge, tcmalloc's release) and glibc's free heap pages
    (`malloc_trim`), which compilation, evaluation and checkpoints leave. The next step faults
    its temporaries in once."""
    keeper = block_keeper()
    if keeper == "mimalloc":
        _symbol("mi_collect")(ctypes.c_bool(True))
    elif keeper == "jemalloc":
        _symbol("mallctl")(b"arena.4096.purge", None, None, None, ctypes.c_size_t(0))
    elif keeper == "tcmalloc":
        _symbol("MallocExtension_ReleaseFreeMemory")()
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def _symbol(name: str):
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def _glibc():
    return ctypes.CDLL(None) if _symbol("gnu_get_libc_version") else None  # glibc's own
