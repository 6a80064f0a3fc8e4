"""The block cache (`supernet/native/bigblocks.cc`, preloaded): large temporaries reuse the
blocks freed before them instead of faulting in new pages, its memory comes back when asked, and
it is a correct allocator for everything else.

Each case runs in a fresh interpreter: what is preloaded and JAX's dispatch mode hold for a
whole process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hwnas.supernet import host_memory

library = host_memory.block_cache_library() if sys.platform.startswith("linux") else None
pytestmark = pytest.mark.skipif(library is None, reason="glibc and a C++ compiler")

# A jitted step whose temporaries are about 200 MB; a later call's minor page faults show
# whether it got fresh pages (about 50,000 of 4 KiB) or an earlier call's.
STEP = """
import json, resource, sys
from hwnas.supernet.host_memory import block_cache_stats, release_free_memory, reuse_host_memory
import jax, jax.numpy as jnp
if sys.argv[1] == "late":
    jnp.ones(3).block_until_ready()
changed = reuse_host_memory()
from jax._src import xla_bridge
step = jax.jit(lambda x: (jnp.tanh(x[:, None] * x[None, :]) @ x).sum())
x = jnp.linspace(0.0, 1.0, 7000)
for _ in range(3):  # the first calls compile, and may overlap the next allocation
    step(x).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
step(x).block_until_ready()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
def rss_mb():
    line = [x for x in open("/proc/self/status") if x.startswith("VmRSS:")][0]
    return int(line.split()[1]) / 1024
held, stats = rss_mb(), block_cache_stats()
release_free_memory()
print(json.dumps({"changed": changed, "faults": faults, "released_mb": held - rss_mb(),
                  "stats": stats, "async": xla_bridge._CPU_ENABLE_ASYNC_DISPATCH.value}))
"""

# The allocator's contract through numpy: calloc'd blocks read zero even when reused, realloc
# keeps the contents, threads share it, free memory stays within one largest block.
ALLOCATOR = """
import json, threading, numpy as np
from hwnas.supernet.host_memory import block_cache_stats, release_free_memory
MB = 1 << 20
a = np.full(40 * MB, 7, np.uint8) * 1  # 40 MB: glibc's; the product 40 MB more
big = np.empty(100 * MB, np.uint8); big[:] = 9; del big
zero = np.zeros(90 * MB, np.uint8)  # calloc: takes the dirty 100 MB block
assert not zero.any()
grown = np.arange(80 * MB // 8, dtype=np.int64)
grown.resize(150 * MB // 8, refcheck=False)  # realloc past the block: moved, contents kept
assert (grown[: 80 * MB // 8] == np.arange(80 * MB // 8)).all()
grown.resize(70 * MB // 8, refcheck=False)  # realloc within it: kept in place
assert (grown == np.arange(70 * MB // 8)).all()
del zero, grown
def churn(seed):
    rng = np.random.default_rng(seed)
    for _ in range(20):
        n = int(rng.integers(64, 200)) * MB
        b = np.empty(n, np.uint8); b[::4096] = seed; assert (b[::4096] == seed).all()
threads = [threading.Thread(target=churn, args=(i,)) for i in range(4)]
[t.start() for t in threads]; [t.join() for t in threads]
stats = block_cache_stats()
release_free_memory()
print(json.dumps({"stats": stats, "after": block_cache_stats(), "small_ok": int(a.sum())}))
"""


def _python(script: str, *args: str, preload: bool = True, **env: str) -> dict:
    env = {**os.environ, **env}
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = str(library)
    cmd = [sys.executable, "-c", script, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env, timeout=300)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_step_reuses_the_block_the_last_step_freed():
    default, reused = _python(STEP, "first", preload=False), _python(STEP, "first")
    assert default["faults"] > 20_000, default  # fresh pages each call, as XLA gets them
    assert default["stats"] is None and not default["changed"]
    assert reused["changed"] and not reused["async"]
    assert reused["faults"] < default["faults"] / 10, (default, reused)
    assert reused["stats"]["hits"] >= 3, reused
    assert reused["released_mb"] > 150, reused  # what the cache kept goes back when asked


@pytest.mark.parametrize(("when", "env"), [("late", {}), ("first", {"HWNAS_HOST_MEMORY": "0"})])
def test_with_jax_started_or_turned_off_dispatch_stays_asynchronous(when, env):
    out = _python(STEP, when, **env)
    assert not out["changed"] and out["async"]


def test_the_cache_is_a_correct_allocator_and_keeps_at_most_one_largest_block():
    out = _python(ALLOCATOR)
    assert out["small_ok"] == 7 * 40 * (1 << 20)
    stats, after = out["stats"], out["after"]
    assert stats["hits"] >= 1 and stats["misses"] >= 2 and stats["in_use"] == 0, stats
    assert stats["kept_bytes"] <= 200 << 20, stats  # one block of at most 200 MB (2 MB pages)
    assert after["kept_bytes"] == 0 and after["in_use"] == 0, after


RESTART = """
import json, os, sys
from hwnas.supernet import host_memory
with open(sys.argv[1], "a") as f:
    f.write("start\\n")
host_memory.allow_restart(sys.orig_argv)
host_memory.restart_with_block_cache()
print(json.dumps({"loaded": host_memory.cache_loaded(), "args": sys.argv[2:],
                  "preload": os.environ.get("LD_PRELOAD"),
                  "restarted": os.environ.get(host_memory.RESTARTED)}))
"""


@pytest.mark.parametrize("env", [{}, {"HWNAS_HOST_MEMORY": "0"}])
def test_a_command_line_restarts_itself_once_with_the_cache(tmp_path, env):
    starts = tmp_path / "starts"
    out = _python(RESTART, str(starts), "--flag", "x y", preload=False, **env)
    on = not env
    assert out == {"loaded": on, "args": ["--flag", "x y"], "preload": None, "restarted": None}
    assert starts.read_text().count("start") == (2 if on else 1)


# A thread allocating and freeing large blocks while the main thread forks: each child frees
# an inherited block, which takes the cache's lock (held by the thread at the fork, at times).
FORK = r"""
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#define MB ((size_t)1 << 20)
static void* churn(void* x) {
  for (unsigned i = 0;; i++) {
    char* volatile p = malloc((64 + (i % 8) * 16) * MB);
    p[0] = 1;
    free(p);
  }
  return x;
}
int main(void) {
  char* volatile keep = malloc(70 * MB); keep[0] = 1;
  pthread_t t; pthread_create(&t, 0, churn, 0);
  int hung = 0;
  for (int i = 0; i < 60; i++) {
    pid_t c = fork();
    if (c == 0) { free(keep); _exit(0); }
    int st, done = 0;
    for (int k = 0; k < 200 && !done; k++) { done = waitpid(c, &st, WNOHANG) == c; usleep(1000); }
    if (!done) { hung++; kill(c, SIGKILL); waitpid(c, &st, 0); }
  }
  printf("%d\n", hung);
  return 0;
}
"""


def test_a_child_forked_while_a_thread_allocates_does_not_hang(tmp_path):
    from hwnas.supernet import native

    src, exe = tmp_path / "fork.c", tmp_path / "fork"
    src.write_text(FORK)
    cc = [native.compiler()[0], "-x", "c", "-O1", "-pthread", str(src), "-o", str(exe)]
    subprocess.run(cc, check=True, capture_output=True)
    env = {**os.environ, "LD_PRELOAD": str(library)}
    done = subprocess.run([str(exe)], capture_output=True, text=True, env=env, timeout=120)
    assert done.stdout.strip() == "0", done  # children that hung on the lock
