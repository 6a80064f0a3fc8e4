"""Host memory (`supernet/host_memory.py`): with mimalloc preloaded, large temporaries reuse the
blocks freed before them instead of faulting in new pages and come back when asked; a command
line restarts itself once with it; nothing changes where JAX may run on an accelerator.

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

library = host_memory.allocator_library() if sys.platform.startswith("linux") else None
pytestmark = pytest.mark.skipif(library is None, reason="Linux with cmeel-mimalloc installed")

# A jitted step whose temporaries are about 200 MB; a later call's minor page faults show
# whether it got fresh pages (about 50,000 of 4 KiB) or an earlier call's.
STEP = """
import json, resource, sys
from hwnas.supernet.host_memory import block_keeper, release_free_memory, reuse_host_memory
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
held = rss_mb()
release_free_memory()
print(json.dumps({"changed": changed, "faults": faults, "released_mb": held - rss_mb(),
                  "keeper": block_keeper(),
                  "async": xla_bridge._CPU_ENABLE_ASYNC_DISPATCH.value}))
"""


def _python(script: str, *args: str, preload: bool = True, **env: str) -> dict:
    env = {**os.environ, **env}
    env.pop("LD_PRELOAD", None)
    if preload:
        env["LD_PRELOAD"] = str(library)
    cmd = [sys.executable, "-c", script, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env, timeout=300)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def plugin_path(tmp_path) -> str:
    """A PYTHONPATH holding a `jax_plugins` package, as a JAX GPU or TPU plugin installs."""
    (tmp_path / "jax_plugins").mkdir()
    (tmp_path / "jax_plugins" / "__init__.py").write_text("")
    return os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))


def test_a_step_reuses_the_blocks_the_last_step_freed():
    default, reused = _python(STEP, "first", preload=False), _python(STEP, "first")
    assert default["faults"] > 20_000, default  # fresh pages each call, as XLA gets them
    assert default["keeper"] is None and not default["changed"]
    assert reused["keeper"] == "mimalloc" and reused["changed"] and not reused["async"]
    assert reused["faults"] < default["faults"] / 10, (default, reused)
    assert reused["released_mb"] > 100, reused  # what it kept goes back when asked


@pytest.mark.parametrize(("when", "env"), [("late", {}), ("first", {"HWNAS_HOST_MEMORY": "0"})])
def test_with_jax_started_or_turned_off_dispatch_stays_asynchronous(when, env):
    out = _python(STEP, when, **env)
    assert not out["changed"] and out["async"]


def test_where_an_accelerator_may_run_dispatch_stays_asynchronous(plugin_path):
    out = _python(STEP, "first", PYTHONPATH=plugin_path, JAX_PLATFORMS="")
    assert not out["changed"] and out["async"]
    out = _python(STEP, "first", PYTHONPATH=plugin_path, JAX_PLATFORMS="cpu")
    assert out["changed"] and not out["async"]  # told to run on the CPU


RESTART = """
import json, os, sys
from hwnas.supernet import host_memory
with open(sys.argv[1], "a") as f:
    f.write("start\\n")
host_memory.allow_restart(sys.orig_argv)
host_memory.restart_with_allocator()
print(json.dumps({"keeper": host_memory.block_keeper(), "args": sys.argv[2:],
                  "preload": os.environ.get("LD_PRELOAD"),
                  "restarted": os.environ.get(host_memory.RESTARTED)}))
"""


@pytest.mark.parametrize("env", [{}, {"HWNAS_HOST_MEMORY": "0"}])
def test_a_command_line_restarts_itself_once_with_the_allocator(tmp_path, env):
    starts = tmp_path / "starts"
    out = _python(RESTART, str(starts), "--flag", "x y", preload=False, **env)
    on = not env
    assert out == {"keeper": "mimalloc" if on else None, "args": ["--flag", "x y"],
                   "preload": None, "restarted": None}  # fmt: skip
    assert starts.read_text().count("start") == (2 if on else 1)


def test_no_restart_where_an_accelerator_may_run(tmp_path, plugin_path):
    starts = tmp_path / "starts"
    env = {"PYTHONPATH": plugin_path, "JAX_PLATFORMS": ""}
    out = _python(RESTART, str(starts), preload=False, **env)
    assert out["keeper"] is None and starts.read_text().count("start") == 1


def test_an_allocator_preloaded_already_is_kept(tmp_path):
    starts = tmp_path / "starts"
    out = _python(RESTART, str(starts))  # mimalloc preloaded by the caller: no restart
    assert out["keeper"] == "mimalloc" and out["preload"] == str(library)
    assert starts.read_text().count("start") == 1
