from __future__ import annotations

import json

import pytest

from hwnas.latency.jobs import (
    Job,
    JobFileError,
    Result,
    parse_job,
    parse_result,
    read_lines,
)
from hwnas.latency.targets import Target

STATS = {"median_ms": 1.5, "cv": 0.02, "iqr_ms": 0.03, "n_reps": 40, "remeasured": False}


def result(**over) -> Result:
    r = Result("abc", Target("tflite"), "r8:k", {"resolution": 8}, "subnet", STATS, {"cpu": "x"})
    return Result(**(r.__dict__ | over))


def test_a_batched_job_carries_a_format_a_worker_without_batches_refuses():
    payload = {"type": "jax-export", "blob": ""}
    plain = Job("j1", Target("cpu"), "key", {"a": 1}, "subnet", payload)
    batched = Job("j2", Target("cpu", batch=32), "key", {"a": 1}, "subnet", payload)
    assert json.loads(plain.to_json())["format"] == "hwnas-latency-job/1"
    assert json.loads(batched.to_json())["format"] == "hwnas-latency-job/2"
    assert parse_job(batched.to_json()) == batched and parse_job(plain.to_json()) == plain


def test_job_and_result_round_trip():
    job = Job("j1", Target("cpu"), "key", {"a": 1}, "subnet", {"type": "jax-export", "blob": ""})
    assert parse_job(job.to_json()) == job
    r = result(run="digits")
    assert parse_result(r.to_json()) == r


@pytest.mark.parametrize(
    "line, message",
    [
        ("not json", "not JSON"),
        ('{"format": "something-else/1"}', "not a hwnas-latency-result/1 line"),
        ("[1, 2]", "not a hwnas-latency-result/1 line"),
    ],
)
def test_foreign_lines(line, message):
    with pytest.raises(JobFileError, match=message):
        parse_result(line)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.pop("job"), "missing key 'job'"),
        (lambda d: d.update(job=5), "'job' has the wrong type"),
        (lambda d: d["stats"].update(median_ms=-1), "median_ms"),
        (lambda d: d["stats"].update(median_ms=0), "must be positive"),
        (lambda d: d["stats"].pop("cv"), "missing key 'cv'"),
        (lambda d: d["stats"].update(n_reps="ten"), "wrong type"),
        (lambda d: d.update(kind="other"), "kind must be"),
        (lambda d: d["target"].update(kind="tpu"), "bad target"),
    ],
)
def test_malformed_results(change, message):
    d = json.loads(result().to_json())
    change(d)
    with pytest.raises(JobFileError, match=message):
        parse_result(json.dumps(d))


def test_read_lines_names_the_bad_line(tmp_path):
    good = result().to_json()
    path = tmp_path / "r.jsonl"
    path.write_text(f"{good}\n\n{good}\n{{broken\n")
    with pytest.raises(JobFileError, match=r"r.jsonl line 4: not JSON"):
        read_lines(path, parse_result)
    path.write_text(f"{good}\n{good}\n")
    assert len(read_lines(path, parse_result)) == 2
