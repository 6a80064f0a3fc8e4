"""`hwnas train` streaming an image folder: kill -9 mid-epoch, resume, same weights."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import cli_env, hwnas
from folders import make_folder
from sqlalchemy import func, select

from hwnas.db.models import Checkpoint, Run
from hwnas.db.session import open_db
from hwnas.supernet import checkpoint

# one stage, one kernel: what is tested is the stream's position, not the space (two
# resolutions, so the resumed steps must also draw the same sizes)
MICRO_64 = str(Path(__file__).parents[2] / "data" / "micro_64.json")


def stream_args(name: str, url: str, folder: Path) -> list[str]:
    return [
        "train", "--dataset", "folder", "--data-dir", str(folder), "--space", MICRO_64,
        "--epochs", "2", "--batch-size", "8", "--loader", "stream", "--workers", "1",
        "--checkpoint-minutes", "0.00001", "--name", name, "--db", url, "--quiet", "--json",
    ]  # fmt: skip


def checkpoints(url: str, name: str) -> int:
    if not Path(url.removeprefix("sqlite:///")).exists():
        return 0
    db = open_db(url, create=False)
    with db.read() as s:
        n = s.scalar(select(func.count(Checkpoint.id)).join(Run).where(Run.name == name))
    db.dispose()
    return n or 0


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("imgs"))


def test_kill_9_mid_epoch_then_resume_streams_on_where_it_stopped(folder, tmp_path):
    url = f"sqlite:///{tmp_path / 'hwnas.db'}"
    ref = json.loads(hwnas(*stream_args("ref", url, folder), cwd=tmp_path).stdout.splitlines()[-1])
    assert ref["dataset"]["loader"] == "stream" and ref["steps"] == 2 * (62 // 8)
    cmd = [sys.executable, "-m", "hwnas.search.cli", *stream_args("cut", url, folder)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(tmp_path),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 300
    try:
        while checkpoints(url, "cut") < 1 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    cut, _ = checkpoint.read_state_dict(tmp_path / "runs" / "cut" / "supernet.ckpt")
    assert 0 < int(cut["state"]["step"]) < ref["steps"]
    # resumed without --loader stream: the run reads the data as it was started
    resume = [a for a in stream_args("cut", url, folder) if a not in ("--loader", "stream")]
    done = hwnas(*resume, "--resume", cwd=tmp_path)
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["steps"] == ref["steps"] and out["dataset"]["loader"] == "stream"
    a, _ = checkpoint.read_state_dict(ref["checkpoint"])
    b, _ = checkpoint.read_state_dict(out["checkpoint"])
    for part in ("params", "batch_stats", "opt_state"):
        flat_a, flat_b = leaves(a["state"][part]), leaves(b["state"][part])
        assert flat_a.keys() == flat_b.keys() and flat_a
        for key, value in flat_a.items():
            np.testing.assert_array_equal(value, flat_b[key], err_msg=f"{part} {key}")


def leaves(tree, prefix="") -> dict:
    if isinstance(tree, dict):
        return {
            k: v for name, sub in tree.items() for k, v in leaves(sub, f"{prefix}/{name}").items()
        }
    return {prefix: np.asarray(tree)}


@pytest.mark.parametrize(
    "extra,needle",
    [
        (["--loader", "stream"], "--loader stream reads image folders only"),
        (["--loader", "fast"], "unknown --loader 'fast'"),
        (["--num-processes", "2"], "--coordinator: a job of several processes needs HOST:PORT"),
        (["--num-processes", "2", "--process-id", "2", "--coordinator", "h:1"], "0..1"),
    ],
)
def test_bad_loader_and_job_flags_exit_2(tmp_path, extra, needle):
    url = f"sqlite:///{tmp_path / 'hwnas.db'}"
    done = hwnas("train", "--epochs", "1", "--db", url, *extra, cwd=tmp_path, check=False)
    assert done.returncode == 2 and needle in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not Path(tmp_path / "hwnas.db").exists() or checkpoints(url, "digits") == 0


def test_resuming_on_a_changed_folder_is_refused(tmp_path):
    folder = make_folder(tmp_path / "imgs", per_class=12)
    url = f"sqlite:///{tmp_path / 'hwnas.db'}"
    args = [a if a != "2" else "1" for a in stream_args("run", url, folder)]  # one epoch
    hwnas(*args, cwd=tmp_path)
    (folder / "class0" / "0000.jpg").rename(folder / "class0" / "zzzz.jpg")
    ckpt = tmp_path / "runs" / "run" / "supernet.ckpt"
    before = ckpt.read_bytes()
    done = hwnas(*args, "--resume", cwd=tmp_path, check=False)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and "training data differ" in last, done.stderr
    assert ckpt.read_bytes() == before
