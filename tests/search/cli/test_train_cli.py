"""End-to-end `hwnas train` / `hwnas subnet` runs on a tiny space (real digits, real training)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import cli_env, hwnas, train_args
from sqlalchemy import select

from hwnas.db.models import Checkpoint, EpochMetric, Run
from hwnas.db.session import open_db
from hwnas.supernet import checkpoint


def params_of(path: str) -> dict:
    state, _ = checkpoint.read_state_dict(path)
    return state["state"]["params"]


def wait_for_first_checkpoint(url: str, name: str, proc: subprocess.Popen) -> None:
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        db = open_db(url, create=False) if Path(url[10:]).exists() else None
        if db is not None:
            with db.read() as s:
                n = s.scalar(select(Checkpoint.id).join(Run).where(Run.name == name).limit(1))
            db.dispose()
            if n:
                return
        time.sleep(0.2)
    raise AssertionError("no checkpoint appeared")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One uninterrupted 3-epoch run (the reference for resume)."""
    cwd = tmp_path_factory.mktemp("train")
    url = f"sqlite:///{cwd / 'hwnas.db'}"
    done = hwnas(*train_args("ref", url), cwd=cwd)
    return cwd, url, json.loads(done.stdout.strip().splitlines()[-1])


def test_train_records_the_run_epochs_and_checkpoints(trained):
    _cwd, url, result = trained
    assert {"run", "checkpoint", "steps", "seconds", "val_acc_largest", "val_acc_smallest"} <= set(
        result
    )
    assert result["steps"] == 3 * (1257 // 128)
    assert result["val_acc_largest"] > 0.3  # learning, not guessing (0.1)
    db = open_db(url, create=False)
    with db.read() as s:
        run = s.scalars(select(Run).where(Run.name == "ref")).one()
        assert run.status == "finished" and run.val_acc_largest == result["val_acc_largest"]
        assert len(s.scalars(select(EpochMetric).where(EpochMetric.run_id == run.id)).all()) == 3
        ck = s.scalars(select(Checkpoint).order_by(Checkpoint.id.desc())).first()
        assert ck.sha256 == checkpoint.file_sha256(result["checkpoint"])
    db.dispose()


def test_kill_9_then_resume_ends_with_the_same_weights(trained):
    cwd, url, result = trained
    env = cli_env(cwd)
    cmd = [sys.executable, "-m", "hwnas.search.cli", *train_args("killed", url)]
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_first_checkpoint(url, "killed", proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    again = hwnas(*train_args("killed", url), cwd=cwd, check=False)
    assert again.returncode == 2 and "--resume" in again.stderr
    resumed = hwnas(*train_args("killed", url), "--resume", cwd=cwd)
    out = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert out["steps"] == result["steps"]
    a, b = params_of(result["checkpoint"]), params_of(out["checkpoint"])
    for key in a:
        for name in a[key]:
            np.testing.assert_array_equal(np.asarray(a[key][name]), np.asarray(b[key][name]))


def test_subnet_command(trained):
    cwd, url, _ = trained
    done = hwnas(
        "subnet", "--run", "ref", "--random", "--seed", "3", "--db", url, "--json", cwd=cwd
    )
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"val_acc", "params", "flops", "subnet", "key"} <= set(out)
    assert out["val_acc"] > 0.1  # ten digits: better than chance after 3 epochs
    assert out["flops"] == 2 * out["macs"] and out["macs"] > out["params"] > 0


@pytest.mark.parametrize(
    "subnet,needle",
    [
        ("{not json", "not valid JSON"),
        ('{"resolution": 8}', "exactly the keys"),
        (
            '{"resolution": 99, "depths": [2, 2], "kernels": [5,5,5,5], "expands": [3,3,3,3]}',
            "resolution 99",
        ),
    ],
)
def test_bad_subnet_json_exits_2(trained, subnet, needle):
    cwd, url, _ = trained
    done = hwnas("subnet", "--run", "ref", "--subnet", subnet, "--db", url, cwd=cwd, check=False)
    assert done.returncode == 2 and needle in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_corrupt_checkpoint_is_refused(trained, tmp_path):
    cwd, url, result = trained
    path = Path(result["checkpoint"])
    saved = path.read_bytes()
    try:
        path.write_bytes(saved[:-100])
        done = hwnas("subnet", "--run", "ref", "--random", "--db", url, cwd=cwd, check=False)
        assert done.returncode == 2 and "corrupt or truncated" in done.stderr
    finally:
        path.write_bytes(saved)


def test_unknown_run_and_dataset_errors(trained):
    cwd, url, _ = trained
    done = hwnas("subnet", "--run", "nope", "--random", "--db", url, cwd=cwd, check=False)
    assert done.returncode == 2 and "no run named 'nope'" in done.stderr
    done = hwnas("train", "--dataset", "mnist", "--db", url, cwd=cwd, check=False)
    assert done.returncode == 2 and "unknown dataset" in done.stderr
