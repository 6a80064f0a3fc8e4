"""The dashboard's data functions on a database made by a real (tiny) search."""

from __future__ import annotations

import pytest
from cli_helpers import run_json, search_args

from hwnas.app import view_data as data
from hwnas.db.session import open_db


@pytest.fixture(scope="module")
def db(ready):
    cwd, url = ready
    run_json(*search_args(url, "view", 5), cwd=cwd)
    with open_db(url, create=False) as opened:
        yield opened


def test_candidates_frame_has_a_latency_column_per_target(db):
    df = data.candidates(db, ["view"])
    assert len(df) == 5 and set(df["search"]) == {"view"}
    assert "predicted:tflite-fp32-t1" in df.columns and df["pareto"].any()
    assert data.candidates_version(db, ["view"])[0] == 5
    subnet = data.candidate_subnet(db, int(df["candidate"].iloc[0]))
    assert {"resolution", "depths", "kernels", "expands"} <= set(subnet)


def test_searches_count_trials_and_candidates(db):
    row = data.searches(db).set_index("search").loc["view"]
    assert row["candidates"] == 5 and row["trials"] == 5 and row["run"] == "tiny"
    assert data.search_budgets(db, ["view"]) == {"view": {}}


def test_latency_and_runs(db):
    assert "tflite-fp32-t1" in data.targets(db)
    meas = data.measurements(db, "tflite-fp32-t1")
    assert len(meas) >= 20 and (meas["median_ms"] > 0).all()
    assert {"main", "macs"} <= set(data.predictors(db, "tflite-fp32-t1"))
    assert "tiny" in list(data.runs(db)["run"])
    assert len(data.epochs(db, "tiny")) == 1 and len(data.checkpoints(db, "tiny")) >= 1


def test_an_unknown_candidate_is_a_lookup_error(db):
    with pytest.raises(LookupError, match="no candidate 999999"):
        data.candidate_subnet(db, 999999)
