"""Every dashboard page through Streamlit's AppTest: on an empty database, on a missing one,
and on a database made by a real (tiny) search."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import run_json, search_args
from streamlit.testing.v1 import AppTest

from hwnas.db.session import open_db

PAGES = Path(__file__).resolve().parents[2] / "app" / "app_pages"
NAMES = ["searches", "pareto", "latency", "runs"]


def run_page(name: str, url: str, monkeypatch) -> AppTest:
    monkeypatch.setenv("HWNAS_DB", url)
    at = AppTest.from_file(str(PAGES / f"{name}_page.py"), default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture(scope="module")
def searched(ready):
    cwd, url = ready
    run_json(*search_args(url, "dash", 6), cwd=cwd)
    return url


@pytest.mark.parametrize("name", NAMES)
def test_empty_database_says_what_to_run(name, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    open_db(url).dispose()
    at = run_page(name, url, monkeypatch)
    text = " ".join(i.value for i in at.info)
    assert "hwnas train --dataset digits" in text and "hwnas search" in text


@pytest.mark.parametrize("name", NAMES)
def test_missing_database_is_one_error_not_a_traceback(name, tmp_path, monkeypatch):
    at = run_page(name, f"sqlite:///{tmp_path / 'none.db'}", monkeypatch)
    assert len(at.error) == 1 and "no database" in at.error[0].value


def test_searches_lists_the_search(searched, monkeypatch):
    at = run_page("searches", searched, monkeypatch)
    df = at.dataframe[0].value
    row = df[df["search"] == "dash"].iloc[0]
    assert row["trials"] == 6 and row["candidates"] == 6 and row["sampler"] == "tpe"
    assert 0 < row["best_feasible_accuracy"] <= 1


def test_pareto_explorer_shows_a_candidate(searched, monkeypatch):
    at = run_page("pareto", searched, monkeypatch)
    assert at.multiselect[0].value == ["dash"] and at.multiselect[1].value == ["tflite-fp32-t1"]
    pick = at.selectbox[0]
    cid = pick.options[0]
    pick.set_value(int(cid)).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(f"Candidate {cid}" in h.value for h in at.subheader)
    assert any(b.label == "Export" for b in at.button)
    assert [r.label for r in at.radio] == ["Precision"]


def test_latency_page_scores_the_predictor(searched, monkeypatch):
    at = run_page("latency", searched, monkeypatch)
    figures = at.dataframe[0].value
    assert {"main", "macs"} <= set(figures.index) and "kendall" in figures.columns


def test_runs_page_shows_the_run(searched, monkeypatch):
    at = run_page("runs", searched, monkeypatch)
    assert "tiny" in list(at.dataframe[0].value["run"])
    assert len(at.dataframe[1].value) >= 1  # checkpoints


def test_pareto_explorer_sees_new_trials_of_a_search(ready, monkeypatch):
    """The candidates frame is cached across sessions; new trials must invalidate it."""
    cwd, url = ready
    run_json(*search_args(url, "grow", 3), cwd=cwd)
    caption = lambda at: " ".join(c.value for c in at.caption)  # noqa: E731
    at = run_page("pareto", url, monkeypatch)
    at.multiselect[0].set_value(["grow"]).run()
    assert caption(at).startswith("3 candidates")
    run_json(*search_args(url, "grow", 5), cwd=cwd)
    at = run_page("pareto", url, monkeypatch)
    at.multiselect[0].set_value(["grow"]).run()
    assert caption(at).startswith("5 candidates")
