"""Data parallelism: one process with two (forced host) devices trains like one device; two
`hwnas train` processes on 127.0.0.1 (jax.distributed, gloo collectives) train like one
process with two devices; a dead process stops the other with one line."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import cli_env

from hwnas.supernet import checkpoint

ROOT = Path(__file__).resolve().parents[2]
# One stage of one kernel and one width: data parallelism does not depend on the space, and
# this one compiles in a third of the tiny space's time (each test starts 2-3 processes).
MICRO = str(ROOT / "tests" / "data" / "micro_space.json")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(cwd: Path, devices: int = 1) -> dict[str, str]:
    env = {k: v for k, v in cli_env(cwd).items() if k != "XLA_FLAGS"}
    env |= {"PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    if devices > 1:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def args(name: str, cwd: Path, epochs: int = 1, batch: int = 128) -> list[str]:
    return [
        sys.executable, "-m", "hwnas.search.cli", "train", "--space", MICRO,
        "--epochs", str(epochs),
        "--batch-size", str(batch), "--name", name, "--db", f"sqlite:///{cwd / 'hwnas.db'}",
        "--quiet", "--json",
    ]  # fmt: skip


def job(name: str, cwd: Path, epochs: int = 1, batch: int = 128, *extra: str) -> list:
    port = free_port()
    procs = []
    for i in range(2):
        cmd = [*args(name, cwd, epochs, batch), *extra, "--coordinator", f"127.0.0.1:{port}",
               "--num-processes", "2", "--process-id", str(i)]  # fmt: skip
        pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
        procs.append(subprocess.Popen(cmd, cwd=cwd, env=env_for(cwd), **pipes))
    return procs


def params(path) -> np.ndarray:
    state, _ = checkpoint.read_state_dict(path)
    tree = state["state"]["params"]
    return np.concatenate(
        [np.asarray(tree[k][n], np.float64).ravel() for k in sorted(tree) for n in sorted(tree[k])]
    )


def train_alone(cwd: Path, devices: int) -> dict:
    done = subprocess.run(args(f"d{devices}", cwd), cwd=cwd, env=env_for(cwd, devices),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory) -> np.ndarray:
    return params(train_alone(tmp_path_factory.mktemp("d2"), 2)["checkpoint"])


def assert_same_training(a: np.ndarray, b: np.ndarray) -> None:
    assert not np.allclose(a, 0)
    # Same updates up to float reduction order; Adam's normalisation can turn a rounding
    # difference in a near-zero gradient into a step of ~lr on a handful of weights.
    close = np.isclose(b, a, atol=2e-4, rtol=1e-3)
    assert close.mean() >= 0.99, f"{(~close).sum()} of {close.size} weights differ"
    assert np.abs(b - a).max() < 0.02


def test_two_devices_train_like_one(tmp_path, two_devices):
    assert_same_training(params(train_alone(tmp_path, 1)["checkpoint"]), two_devices)


def test_two_processes_train_like_one_process_with_two_devices(tmp_path, two_devices):
    procs = job("two", tmp_path)
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert [r["process"] for r in results] == [0, 1]
    assert results[0]["steps"] == results[1]["steps"] == 1257 // 128
    assert_same_training(two_devices, params(results[0]["checkpoint"]))
    assert "run" in results[0] and "run" not in results[1]  # only process 0 records


def test_a_dead_process_stops_the_job_with_one_line(tmp_path):
    procs = job("dies", tmp_path, 50, 128, "--checkpoint-minutes", "0.00001")
    deadline = time.time() + 300
    ckpt = tmp_path / "runs" / "dies" / "supernet.ckpt"
    while not ckpt.exists() and time.time() < deadline and procs[0].poll() is None:
        time.sleep(0.2)  # training has begun: the first step's checkpoint is written
    os.kill(procs[1].pid, signal.SIGKILL)
    t0 = time.time()
    _, err = procs[0].communicate(timeout=120)
    procs[1].wait()
    assert procs[0].returncode == 1, err[-2000:]
    assert time.time() - t0 < 60
    last = err.strip().splitlines()[-1]
    assert "another process of the job stopped" in last and "--resume" in last, err[-3000:]


def test_bad_input_stops_every_process_with_exit_2(tmp_path):
    procs = job("odd", tmp_path, batch=127)  # does not divide over the job's two devices
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 2, err[-2000:]
        assert "must divide over the job's 2 devices" in err.strip().splitlines()[-1]
