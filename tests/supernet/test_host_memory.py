"""`reuse_host_memory`: large temporaries reuse freed pages instead of faulting in new ones.

Each case runs in a fresh interpreter: the allocator's settings and JAX's dispatch mode hold for
a whole process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

# A jitted step whose temporaries are about 200 MB; a later call's minor page faults show
# whether it got fresh pages (about 50,000 of 4 KiB) or an earlier call's.
SCRIPT = """
import json, resource, sys
from supernet.host_memory import reuse_host_memory
import jax, jax.numpy as jnp
if sys.argv[1] == "late":
    jnp.ones(3).block_until_ready()
changed = reuse_host_memory() if sys.argv[1] != "default" else False
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
from supernet.host_memory import release_free_memory
held = rss_mb()
release_free_memory()
print(json.dumps({"changed": changed, "faults": faults, "released_mb": held - rss_mb(),
                  "async": xla_bridge._CPU_ENABLE_ASYNC_DISPATCH.value}))
"""

glibc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")


def _run(setting: str, **env: str) -> dict:
    env = {"HWNAS_HOST_MEMORY": "1", **env}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, setting],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@glibc
def test_a_step_reuses_the_pages_the_last_step_freed():
    default, reused = _run("default"), _run("reuse")
    assert default["faults"] > 20_000, default  # fresh pages each call, as XLA gets them
    assert reused["changed"] and not reused["async"]
    assert reused["faults"] < default["faults"] / 10, (default, reused)
    assert reused["released_mb"] > 150, reused  # what the heap kept goes back when asked


@glibc
@pytest.mark.parametrize(("setting", "env"), [("late", {}), ("reuse", {"HWNAS_HOST_MEMORY": ""})])
def test_with_jax_started_or_not_asked_for_it_changes_nothing(setting, env):
    out = _run(setting, **env)
    assert not out["changed"] and out["async"]
    assert out["faults"] > 20_000
