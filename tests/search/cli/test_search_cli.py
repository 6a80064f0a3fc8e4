"""`hwnas search` / `hwnas pareto` end to end on a tiny space: a really trained run, real LiteRT
measurements, a fitted predictor, Optuna's RDB storage on real SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from cli_helpers import age_running_trials, cli_env, copy_rows, hwnas, run_json, search_args
from optuna.trial import TrialState
from sqlalchemy import func, select

from hwnas.db.models import Candidate, Measurement, Search
from hwnas.db.models import Target as TargetRow
from hwnas.db.session import open_db


def trials_of(url: str, name: str) -> list:
    study = optuna.load_study(study_name=name, storage=url)
    return study.get_trials(deepcopy=False)


def states(url: str, name: str) -> dict:
    out: dict = {}
    for t in trials_of(url, name):
        out[t.state] = out.get(t.state, 0) + 1
    return out


def n_candidates(url: str, name: str) -> int:
    with open_db(url, create=False) as db, db.read() as s:
        sid = s.scalar(select(Search.id).where(Search.name == name))
        return s.scalar(select(func.count()).where(Candidate.search_id == sid))


def measured_keys(url: str, key: str = "tflite-fp32-t1") -> set[tuple[int, str]]:
    """(row id, subnet key) of every subnet measurement of target `key`."""
    with open_db(url, create=False) as db, db.read() as s:
        rows = s.execute(select(Measurement.id, Measurement.subnet_key).join(TargetRow).where(
            TargetRow.key == key, Measurement.kind == "subnet"))  # fmt: skip
        return {(i, k) for i, k in rows}


def measured_by(url: str, name: str, key: str = "tflite-fp32-t1") -> set[tuple[int, str]]:
    """The measurements of `key` whose subnet search `name` measured (as `measured_keys`)."""
    with open_db(url, create=False) as db, db.read() as s:
        sid = s.scalar(select(Search.id).where(Search.name == name))
        cands = s.scalars(select(Candidate).where(Candidate.search_id == sid))
        keys = {c.subnet_key for c in cands if key in (c.measured_ms or {})}
    return {m for m in measured_keys(url, key) if m[1] in keys}


def test_search_records_candidates_and_resumes(ready):
    cwd, url = ready
    first = run_json(*search_args(url, "s1", 6), cwd=cwd)
    assert first["search"] == "s1" and first["trials"] == 6 and first["new_trials"] == 6
    front = [(p["accuracy"], p["latency_ms"]["tflite-fp32-t1"]) for p in first["pareto"]]
    assert front and all(ms > 0 for _, ms in front)
    # most accurate first; along a front, more accuracy costs latency (none dominates another)
    assert front == sorted(front, reverse=True)
    before = {t.number: t.values for t in trials_of(url, "s1")}
    again = run_json(*search_args(url, "s1", 10), cwd=cwd)
    assert again["trials"] == 10 and again["new_trials"] == 4
    after = {t.number: t.values for t in trials_of(url, "s1")}
    assert all(after[k] == v for k, v in before.items())
    listed = run_json("pareto", "s1", "--db", url, cwd=cwd)
    assert listed["pareto"] == again["pareto"]
    assert n_candidates(url, "s1") == 10


def test_a_budget_bounds_the_front_and_the_front_is_measured(ready):
    cwd, url = ready
    free = run_json(*search_args(url, "free", 8), cwd=cwd)
    lat = sorted(p["latency_ms"]["tflite-fp32-t1"] for p in free["pareto"])
    budget = lat[len(lat) // 2] * 1.05
    args = search_args(url, "budget", 8, "--budget", f"tflite={budget}", "--rounds", "1")
    args.remove("--no-measure")
    # measured as a user's command is, in a process of its own (the test process holds the
    # runtimes of every earlier test, and a slower front refits the predictors past the budget)
    before = measured_keys(url)
    done = hwnas(*args, "--json", cwd=cwd, process=True)
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["pareto"], out
    # measured beside subnets measured before (anchors), which are not recorded again
    assert "as long as at the anchors' measurement" in done.stderr
    new = measured_keys(url) - before
    assert new and new <= measured_by(url, "budget")
    assert all(p["latency_ms"]["tflite-fp32-t1"] <= budget for p in out["pareto"])
    assert all(p["measured_ms"]["tflite-fp32-t1"] > 0 for p in out["pareto"])
    check = out["budget_check"]["tflite-fp32-t1"]
    measured = [p["measured_ms"]["tflite-fp32-t1"] for p in out["pareto"]]
    assert check["n"] == len(measured)
    assert check["within_budget"] == sum(m <= budget for m in measured) / len(measured)


def test_kill_9_mid_search_then_resume_keeps_every_finished_trial(ready):
    cwd, url = ready
    env = cli_env(cwd)
    cmd = [sys.executable, "-m", "hwnas.search.cli", *search_args(url, "killed", 500)]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        try:
            if states(url, "killed").get(TrialState.COMPLETE, 0) >= 4:
                break
        except KeyError:  # the study does not exist yet
            continue
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {
        t.number: t.values for t in trials_of(url, "killed") if t.state == TrialState.COMPLETE
    }
    assert len(finished) >= 4
    age_running_trials(url, "killed")
    target = len(finished) + 3
    out = run_json(*search_args(url, "killed", target), cwd=cwd)
    counts = states(url, "killed")
    assert counts.get(TrialState.RUNNING, 0) == 0 and counts[TrialState.COMPLETE] == target
    after = {t.number: t.values for t in trials_of(url, "killed")}
    assert all(after[k] == v for k, v in finished.items())
    assert out["trials"] == target == n_candidates(url, "killed")


def test_four_workers_share_sqlite_without_locking_errors(ready):
    cwd, url = ready
    done = hwnas(*search_args(url, "four", 24, "--workers", "4"), "--json", cwd=cwd, process=True)
    assert "database is locked" not in done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    counts = states(url, "four")
    assert 24 <= counts[TrialState.COMPLETE] <= 27 and TrialState.FAIL not in counts
    assert out["trials"] == counts[TrialState.COMPLETE] == n_candidates(url, "four")


def test_two_machines_join_one_study_on_postgresql(ready, pg_url, tmp_path):
    copy_rows(ready[1], pg_url)  # the prepared run, its checkpoint where it is
    env = cli_env(tmp_path)
    cmd = [sys.executable, "-m", "hwnas.search.cli", *search_args(pg_url, "shared", 16)]
    procs = [
        subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    errs = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    counts = states(pg_url, "shared")
    assert 16 <= counts[TrialState.COMPLETE] <= 17 and TrialState.FAIL not in counts
    assert n_candidates(pg_url, "shared") == counts[TrialState.COMPLETE]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--budget", "tflite=0.000001"], "no subnet meets the budget"),
        (["--target", "npu"], "npu is not cpu, gpu or tflite: import its measurements"),
        (["--target", "tflite-fp8-t1"], "unknown precision"),
        (["--target", "cpu"], "hwnas predictor fit --target cpu"),
        (["--budget", "cpu=3"], "not a --target"),
        (["--sampler", "annealing"], "unknown sampler"),
        (["--objective", "flops"], "unknown --objective"),
        (["--budget", "tflite=1", "--margin", "lots"], "--margin 'lots'"),
        (["--initial", "-1"], "--initial must be 0 or more"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(ready, extra, message):
    cwd, url = ready
    done = hwnas(*search_args(url, "bad", 5, *extra), cwd=cwd, check=False)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "bad" not in optuna.get_all_study_names(url)
    db = open_db(url, create=False)
    with db.read() as s:
        assert s.scalar(select(Search).where(Search.name == "bad")) is None
    db.dispose()


def test_unknown_search_for_pareto(ready):
    cwd, url = ready
    done = hwnas("pareto", "nosuch", "--db", url, cwd=cwd, check=False)
    assert done.returncode == 2 and "no search named 'nosuch'" in done.stderr
