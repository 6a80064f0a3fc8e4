"""`hwnas measure` / `python -m hwnas.latency.worker` / `hwnas predictor fit` / `hwnas predict`,
end to
end on a tiny space with a really trained run, the real LiteRT interpreter and real timing."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import copy_db, hwnas, run_json
from sqlalchemy import delete, func, select

from hwnas.db.models import Measurement, Predictor
from hwnas.db.models import Target as TargetRow
from hwnas.db.session import open_db

ROOT = Path(__file__).resolve().parents[3]
# What a measurement box lacks: everything but numpy and the target's runtime.
BLOCKED = [
    "optuna", "sqlalchemy", "tensorflow", "flax", "optax",
    "hwnas.supernet", "hwnas.search", "hwnas.db",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(ready, tmp_path_factory):
    """The shared tiny run (one epoch) as `hwnas train` left it: a copy of its database
    without the measurements and predictors `ready` added."""
    cwd = tmp_path_factory.mktemp("lat")
    url = copy_db(ready[1], cwd / "hwnas.db")
    with open_db(url, create=False) as db, db.write() as s:
        s.execute(delete(Predictor))
        s.execute(delete(Measurement))
    return cwd, url


def worker(
    jobs: Path, results: Path, blocked: list[str], *extra: str
) -> subprocess.CompletedProcess:
    argv = [str(jobs), str(results), "--max-reps", "30", *extra]
    prelude = (
        "import sys\n"
        f"for m in {blocked!r}: sys.modules[m] = None\n"
        "from hwnas.latency.worker import main\n"
        f"sys.exit(main({argv!r}))\n"
    )
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", prelude], capture_output=True, text=True, env=env, timeout=600
    )


def count(url: str, model=Measurement) -> int:
    with open_db(url, create=False) as db, db.read() as s:
        return s.scalar(select(func.count()).select_from(model))


def test_measure_tflite_here(trained):
    cwd, url = trained
    out = run_json(
        "measure", "--run", "tiny", "--target", "tflite", "--n", "3", "--db", url, cwd=cwd
    )
    assert out["target"] == "tflite-fp32-t1" and out["measured"] == 3 and out["stored"] == 3
    assert out["median_cv"] >= 0 and out["median_ms"] > 0
    noise = out["noise"]
    assert noise["n"] == 3 and noise["within5"] <= noise["within10"]
    # of three subnets, the median difference is within 10% exactly when two of them are
    assert (noise["median_rel_diff"] <= 0.10) == (noise["within10"] >= 2 / 3)
    # Measured but never fitted: `predict` says which command to run.
    done = hwnas(
        "predict", "--target", "tflite", "--subnet", "{}", "--db", url, cwd=cwd, check=False
    )
    assert done.returncode == 2 and "no main predictor" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("target, blocked", [("cpu", BLOCKED), ("tflite", [*BLOCKED, "jax"])])
def test_jobs_worker_import_round_trip(trained, tmp_path, target, blocked):
    cwd, url = trained
    jobs, results = tmp_path / "jobs.jsonl", tmp_path / "results.jsonl"
    out = run_json(
        "measure", "--run", "tiny", "--target", target, "--n", "3", "--seed", "5",
        "--jobs-out", str(jobs), "--db", url, cwd=cwd,
    )  # fmt: skip
    assert out["jobs"] == 3 and len(jobs.read_text().splitlines()) == 3
    done = worker(jobs, results, blocked, "--chunk", "2")  # two chunks: drift is corrected
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(x) for x in results.read_text().splitlines()]
    assert len(lines) == 3 and all(x["fingerprint"]["cores"] for x in lines)
    drifts = [x["stats"]["drift"] for x in lines]
    # the references took the drift out of the second chunk and pass (the logic itself:
    # tests/latency/test_worker.py)
    assert drifts != [1.0, 1.0, 1.0] and all(0.2 < d < 5 for d in drifts)
    before = count(url)
    assert run_json("measure", "--import", str(results), "--db", url, cwd=cwd)["imported"] == 3
    again = run_json("measure", "--import", str(results), "--db", url, cwd=cwd)
    assert again["imported"] == 0 and again["skipped"] == 3
    assert count(url) == before + 3


def test_malformed_results_import_nothing(trained, tmp_path):
    cwd, url = trained
    jobs, results = tmp_path / "jobs.jsonl", tmp_path / "results.jsonl"
    hwnas("measure", "--run", "tiny", "--target", "cpu", "--n", "2", "--seed", "9",
          "--jobs-out", str(jobs), "--db", url, cwd=cwd)  # fmt: skip
    assert worker(jobs, results, BLOCKED).returncode == 0
    good = results.read_text().splitlines()
    before = count(url)
    for bad, where in [("{oops", "line 2"), ('{"format": "other/1"}', "line 2")]:
        results.write_text(f"{good[0]}\n{bad}\n{good[1]}\n")
        done = hwnas("measure", "--import", str(results), "--db", url, cwd=cwd, check=False)
        assert done.returncode == 2 and where in done.stderr and "nothing" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert count(url) == before


def test_worker_refuses_a_bad_job_file(tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"format": "hwnas-latency-job/1", "id": 3}\n')
    done = worker(jobs, tmp_path / "r.jsonl", BLOCKED)
    assert done.returncode == 2 and "line 1" in done.stderr
    assert not (tmp_path / "r.jsonl").exists()


def test_worker_refuses_passes_without_two_calls_each(tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("")
    done = worker(jobs, tmp_path / "r.jsonl", BLOCKED, "--passes", "20")  # --max-reps 30
    assert done.returncode == 2 and "give at least 40" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "r.jsonl").exists()


def test_fit_and_predict(trained):
    cwd, url = trained
    out = run_json(
        "measure", "--run", "tiny", "--target", "cpu", "--n", "25", "--seed", "1", "--blocks",
        "--passes", "1", "--max-reps", "20", "--no-noise-floor", "--db", url, cwd=cwd,
    )  # fmt: skip
    assert out["measured"] > 25  # subnets plus lookup-table blocks
    assert out["noise"] is None and out["median_reps"] <= 20
    fit = run_json("predictor", "fit", "--target", "cpu", "--db", url, cwd=cwd)
    assert fit["kind"] == "main" and fit["n_train"] >= 20
    for scores in (fit["holdout"], fit["baselines"]["macs"], fit["baselines"]["lut"]):
        assert set(scores) >= {"n", "within5", "within10", "mape", "kendall"}
    assert count(url, Predictor) == 3
    subnet = json.dumps(
        {"resolution": 8, "depths": [1, 1], "kernels": [3, 0, 5, 0], "expands": [2, 0, 3, 0]}
    )
    pred = run_json("predict", "--target", "cpu", "--subnet", subnet, "--db", url, cwd=cwd)
    assert pred["latency_ms"] > 0
    # With a predictor fitted, a subnet missing its fields is the error named.
    done = hwnas("predict", "--target", "cpu", "--subnet", "{}", "--db", url, cwd=cwd, check=False)
    assert done.returncode == 2 and "subnet JSON needs" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_second_session_joins_the_first_in_its_unit(trained, tmp_path):
    cwd, url = trained
    url = copy_db(url, tmp_path / "hwnas.db")
    with open_db(url, create=False) as db, db.write() as s:
        s.execute(delete(Measurement))  # what other tests of the module measured
    args = ["measure", "--run", "tiny", "--target", "tflite", "--n", "3", "--passes", "1",
            "--max-reps", "20", "--no-noise-floor", "--db", url]  # fmt: skip
    first = hwnas(*args, "--seed", "11", cwd=cwd)
    assert "measured beside" not in first.stderr  # nothing to anchor to yet
    second = hwnas(*args, "--seed", "12", cwd=cwd)
    # the first session's subnets measured again beside the new ones, not recorded again
    said = r"measured beside [1-3] subnets measured before on this target: calls took [0-9.]+x"
    assert re.search(said, second.stderr), second.stderr
    with open_db(url, create=False) as db, db.read() as s:
        tflite = s.scalars(select(TargetRow.id).where(TargetRow.key == "tflite-fp32-t1")).one()
        keys = list(s.scalars(select(Measurement.subnet_key).where(
            Measurement.target_id == tflite)))  # fmt: skip
    assert len(keys) == len(set(keys)) and 3 < len(keys) <= 6


@pytest.mark.parametrize(
    "args, message",
    [
        (["measure", "--run", "tiny", "--target", "gpu", "--n", "2"], "no CUDA device"),
        (["measure", "--run", "tiny", "--target", "tpu"], "target tpu is not one hwnas runs"),
        (["measure", "--run", "nope", "--target", "cpu"], "no run named"),
        (
            ["measure", "--run", "tiny", "--target", "cpu", "--threads", "4"],
            "--target: threads and precision are settings of the tflite target only",
        ),
        (["measure", "--import", "missing.jsonl"], "no such file"),
        (["measure", "--run", "tiny", "--passes", "0"], "--passes: must be at least 1"),
        (["measure", "--run", "tiny", "--max-reps", "3", "--passes", "2"], "give at least 4"),
        (
            ["measure", "--run", "tiny", "--passes", "1", "--jobs-out", "j.jsonl"],
            "hwnas.latency.worker",
        ),
        (["measure", "--run", "tiny", "--no-noise-floor", "--jobs-out", "j.jsonl"], "drop it"),
        (["predictor", "fit", "--target", "tflite-int8-t2"], "no measurements"),
    ],
)
def test_bad_input_exits_2(trained, args, message):
    cwd, url = trained
    done = hwnas(*args, "--db", url, cwd=cwd, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
