"""The measuring services called directly (`search/services/measuring.py`): targets and
samples, the tiny space measured untrained on the real LiteRT interpreter (here, and through
a job file, the worker and an import) and its predictor fitted, and bad inputs raising
`HwnasError` with their field before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import TINY

from hwnas.exceptions import HwnasError, shown
from hwnas.latency.jobs import Result as JobResult
from hwnas.latency.protocol import Protocol
from hwnas.latency.targets import Target
from hwnas.latency.worker import main as worker_main
from hwnas.search.services import measuring, prediction
from hwnas.search.services.target_args import parse_target
from hwnas.supernet.space import load_space

TFLITE = Target("tflite")
QUICK = measuring.protocol_for(1, 20)


@pytest.mark.parametrize(
    "args, field, cli",
    [
        (("tflite-fp32",), "target", "--target tflite-fp32: unknown target 'tflite-fp32'"),
        (("cpu", 1, "fp32", "", 0), "batch", "--batch: must be between 1 and 4096, got 0"),
        (("tflite-fp32-t1-b8",), "target", "--target tflite-fp32-t1-b8: the tflite target runs"),
        (("cpu", 4), "target", "--target: threads and precision are settings of the tflite"),
        (("tflite", 0), "threads", "--threads: must be between 1 and 256, got 0"),
        (("tflite-fp32-t300",), "target", "--target tflite-fp32-t300: must be between 1 and"),
        (("tflite-fp8-t1",), "target", "--target tflite-fp8-t1: unknown precision 'fp8'"),
    ],
)
def test_parse_target_errors_name_their_field(args, field, cli):
    with pytest.raises(HwnasError) as e:
        parse_target(*args)
    assert e.value.field == field and shown(e.value, flags=True).startswith(cli)


def test_parse_target_takes_a_kind_with_settings_or_a_full_key():
    assert parse_target("tflite", 4, "int8", "pixel").key == "tflite-int8-t4@pixel"
    assert parse_target("tflite-int8-t4@pixel") == Target("tflite", 4, "int8", "pixel")
    assert parse_target("cpu").key == "cpu"
    assert parse_target("cpu", batch=32) == parse_target("cpu-b32") == Target("cpu", batch=32)
    imported = parse_target("pixel7-npu-b8")
    assert (imported.kind, imported.name, imported.batch) == ("imported", "pixel7-npu", 8)
    assert not imported.measurable and imported.key == "pixel7-npu-b8"


def test_sample_subnets_are_distinct_repeatable_and_spread():
    space = load_space(TINY)
    a = measuring.sample_subnets(space, 30, seed=3, spread=0.5)
    assert a == measuring.sample_subnets(space, 30, seed=3, spread=0.5)
    assert len({s.key for s in a}) == 30 and a != measuring.sample_subnets(space, 30, seed=4)
    macs = sorted(space.cost(s).macs for s in a[:15])  # the sized half spans the range
    assert macs[0] <= 1.2 * space.cost(space.smallest()).macs
    assert macs[-1] >= 0.8 * space.cost(space.largest()).macs
    with pytest.raises(HwnasError) as e:
        measuring.sample_subnets(space, 0, seed=0)
    assert e.value.field == "n" and shown(e.value, True) == "--n must be at least 1, got 0"


def test_the_noise_floor_is_typed_with_its_raw_figures():
    first = [{"median_ms": 1.0, "drift": 1.0}, {"median_ms": 2.0, "drift": 1.2}]
    second = [{"median_ms": 1.02, "drift": 1.0}, {"median_ms": 2.5}]
    floor = measuring.remeasure_agreement(first, second)
    out = floor.to_json()
    assert list(out) == ["n", "within5", "within10", "median_rel_diff", "kendall", "raw"]
    assert floor.n == 2 and floor.within10 == 0.5 and floor.raw.within10 == 1.0
    assert out["raw"]["n"] == 2 and "raw" not in out["raw"]


def bad_measure_calls(tmp_path: Path) -> list[tuple[dict, str, str]]:
    space = load_space(TINY)
    (tmp_path / "taken.jsonl").write_text("")
    return [
        ({}, "run", "give --run (a trained run) or space"),
        ({"space": space, "n": 0}, "n", "--n must be at least 1"),
        ({"space": space, "jobs_out": tmp_path / "taken.jsonl"}, "jobs_out",
         f"{tmp_path / 'taken.jsonl'} exists; choose another --jobs-out file"),
        ({"space": space, "jobs_out": tmp_path / "no" / "j.jsonl"}, "jobs_out",
         f"--jobs-out: folder {tmp_path / 'no'} does not exist"),
        ({"space": space, "jobs_out": tmp_path / "j.jsonl", "protocol": QUICK}, "protocol",
         "--protocol applies to measuring here"),
        ({"space": space, "jobs_out": tmp_path / "j.jsonl", "noise": False}, "noise",
         "--noise=False applies to measuring here"),
    ]  # fmt: skip


def test_bad_measure_input_names_its_field_and_creates_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    for kwargs, field, cli in bad_measure_calls(tmp_path):
        with pytest.raises(HwnasError) as e:
            measuring.measure(url, None, TFLITE, **kwargs)
        assert e.value.field == field and shown(e.value, flags=True).startswith(cli)
    assert not (tmp_path / "fresh.db").exists() and not (tmp_path / "j.jsonl").exists()


def test_gpu_without_a_device_points_to_a_job_file(tmp_path):
    from hwnas.latency.runners import gpu_name

    if gpu_name() is not None:
        pytest.skip("this machine has a GPU")
    with pytest.raises(HwnasError, match="no CUDA device") as e:
        measuring.measure(f"sqlite:///{tmp_path / 'x.db'}", None, Target("gpu"),
                          space=load_space(TINY))  # fmt: skip
    assert e.value.field == "jobs_out" and "write a job file with jobs_out" in str(e.value)


def test_a_space_measured_here_is_fitted_and_predicted(sqlite_url):
    space = load_space(TINY)
    out = measuring.measure(sqlite_url, None, TFLITE, n=20, seed=2, protocol=QUICK, space=space)
    assert isinstance(out, measuring.MeasureResult)
    assert (out.target, out.measured, out.stored) == ("tflite-fp32-t1", 20, 20)
    assert (out.space, out.space_key, out.weights) == ("tiny", space.key, "init")
    assert out.median_ms > 0 and out.median_reps <= 20 and out.noise is not None
    assert out.noise.n == 10 and out.noise.within5 <= out.noise.within10
    assert list(out.to_json()) == [
        "target",
        "measured",
        "stored",
        "median_cv",
        "median_ms",
        "median_reps",
        "noise",
        "space",
        "space_key",
        "weights",
    ]
    json.dumps(out.to_json())  # fmt: skip
    fit = prediction.fit(sqlite_url, TFLITE)
    assert fit.space_key == space.key and fit.n_train == 16 and fit.holdout.n == 4
    pred = prediction.predict(sqlite_url, TFLITE, space.largest().to_json(), space_key=space.key)
    assert pred.latency_ms > 0


def test_a_job_file_goes_through_the_worker_and_is_imported_once(tmp_path, sqlite_url):
    space = load_space(TINY)
    jobs, results = tmp_path / "jobs.jsonl", tmp_path / "results.jsonl"
    written = measuring.measure(sqlite_url, None, TFLITE, n=3, jobs_out=jobs, space=space)
    assert written.to_json() == {"target": "tflite-fp32-t1", "jobs": 3, "path": str(jobs)}
    assert worker_main([str(jobs), str(results), "--max-reps", "20", "--passes", "1"]) == 0
    first = measuring.import_results(sqlite_url, results)
    assert (first.imported, first.skipped, first.path) == (3, 0, str(results))
    again = measuring.import_results(sqlite_url, results)
    assert (again.imported, again.skipped) == (0, 3)


def test_bad_results_files_import_nothing(tmp_path, sqlite_url):
    with pytest.raises(HwnasError) as e:
        measuring.import_results(sqlite_url, tmp_path / "missing.jsonl")
    assert e.value.field == "import" and shown(e.value, True).startswith("--import: no such")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(HwnasError, match="holds no results"):
        measuring.import_results(sqlite_url, empty)
    foreign = tmp_path / "foreign.jsonl"  # a space this database never wrote jobs for
    line = JobResult("j1", TFLITE, "k", {}, "subnet", {"median_ms": 1.0, "cv": 0.0,
                     "iqr_ms": 0.0, "n_reps": 20}, {}, space="0123456789abcdef")  # fmt: skip
    foreign.write_text(line.to_json() + "\n")
    with pytest.raises(HwnasError, match="does not hold; import it into the database"):
        measuring.import_results(sqlite_url, foreign)
    assert measuring.protocol_for(2, 1000) == Protocol()
