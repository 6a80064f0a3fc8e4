"""Latency of a space measured before any training (`hwnas measure --space`): stored by (space,
target), fitted and used for prediction on a database with no run, then found by the search of
a run trained later on the same space. Real LiteRT, real timing, the tiny space."""

from __future__ import annotations

import json

import pytest
from cli_helpers import TINY, hwnas, run_json, search_args, stored, train_args
from test_latency_cli import BLOCKED, count, worker

from hwnas.db.models import Measurement, Predictor, Space
from hwnas.supernet.space import load_space

SUBNET = json.dumps(
    {"resolution": 8, "depths": [1, 1], "kernels": [3, 0, 5, 0], "expands": [2, 0, 3, 0]}
)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """A fresh database holding only the tiny space's tflite measurements and predictor."""
    cwd = tmp_path_factory.mktemp("space")
    url = f"sqlite:///{cwd / 'hwnas.db'}"
    out = run_json(
        "measure", "--space", TINY, "--target", "tflite", "--n", "20", "--no-noise-floor",
        "--db", url, cwd=cwd,
    )  # fmt: skip
    return cwd, url, out


def test_a_space_is_measured_fitted_and_predicted_without_a_run(measured):
    cwd, url, out = measured
    key = load_space(TINY).key
    assert out["stored"] == 20 and out["weights"] == "init" and out["space_key"] == key
    measurements = stored(url, Measurement)
    assert {(m.space_key, m.weights, m.run_id) for m in measurements} == {(key, "init", None)}
    assert [s.key for s in stored(url, Space)] == [key]
    fit = run_json("predictor", "fit", "--target", "tflite", "--db", url, cwd=cwd)
    assert fit["space_key"] == key and fit["n_train"] == 16
    assert {p.space_key for p in stored(url, Predictor)} == {key}
    pred = run_json("predict", "--target", "tflite", "--subnet", SUBNET, "--space", TINY,
                    "--db", url, cwd=cwd)  # fmt: skip
    assert pred["latency_ms"] > 0


def test_a_run_of_the_measured_space_searches_with_its_predictor(measured):
    cwd, url, _ = measured
    if not stored(url, Predictor):
        hwnas("predictor", "fit", "--target", "tflite", "--db", url, cwd=cwd)
    hwnas(*train_args("tiny", url, epochs=1), cwd=cwd)
    before = count(url)
    hwnas(*search_args(url, "s", 6), cwd=cwd)
    assert count(url) == before  # nothing measured again
    # another space's predictor is not taken for it: the ofa-mbv3 space has none
    done = hwnas("predict", "--target", "tflite", "--subnet", SUBNET, "--space", "ofa-mbv3",
                 "--db", url, cwd=cwd, check=False)  # fmt: skip
    assert done.returncode == 2 and "no main predictor" in done.stderr
    # a run and a space that disagree: one line, exit 2, nothing measured
    done = hwnas("measure", "--run", "tiny", "--space", "ofa-mbv3", "--target", "tflite",
                 "--n", "2", "--db", url, cwd=cwd, check=False)  # fmt: skip
    assert done.returncode == 2 and "trained space" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and count(url) == before


def test_space_jobs_go_through_the_worker_int8_calibrated_on_synthetic_inputs(tmp_path):
    url = f"sqlite:///{tmp_path / 'hwnas.db'}"
    jobs, results = tmp_path / "jobs.jsonl", tmp_path / "results.jsonl"
    hwnas("measure", "--space", TINY, "--target", "tflite-int8-t1", "--n", "2",
          "--jobs-out", str(jobs), "--db", url, cwd=tmp_path)  # fmt: skip
    assert {json.loads(line)["weights"] for line in jobs.read_text().splitlines()} == {"init"}
    assert worker(jobs, results, [*BLOCKED, "jax"]).returncode == 0
    out = run_json("measure", "--import", str(results), "--db", url, cwd=tmp_path)
    assert out["imported"] == 2
    assert {(m.weights, m.space_key) for m in stored(url, Measurement)} == {
        ("init", load_space(TINY).key)
    }


def test_fitting_a_space_not_measured_on_the_target_is_refused(measured):
    cwd, url, _ = measured
    before = len(stored(url, Predictor))
    done = hwnas("predictor", "fit", "--target", "tflite", "--space", "digits", "--db", url,
                 cwd=cwd, check=False)  # fmt: skip
    assert done.returncode == 2 and "no measurements of space" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert len(stored(url, Predictor)) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--space", "bad.json", "--target", "tflite"], "cannot read space file"),
        (["--space", "nope", "--target", "tflite"], "unknown space 'nope'"),
        (["--space", TINY, "--target", "gpu"], "no CUDA device"),
        (["--target", "tflite"], "give --run NAME"),
        (["--space", TINY, "--target", "tflite", "--jobs-out", "no/j.jsonl"], "does not exist"),
    ],
)
def test_bad_space_measure_input_exits_2_and_creates_nothing(tmp_path, args, message):
    (tmp_path / "bad.json").write_text("{oops")
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    done = hwnas("measure", *args, "--db", url, cwd=tmp_path, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "fresh.db").exists()
