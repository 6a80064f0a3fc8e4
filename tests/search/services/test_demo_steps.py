"""The demo's choices as plain functions: the best feasible subnet of a front, and the typed
steps' JSON (a step's JSON is `reused` followed by its result's keys)."""

from __future__ import annotations

from hwnas.search.services.demo import Best, Step, best_feasible

FRONT = [
    {"candidate": 1, "accuracy": 0.95, "key": "a", "latency_ms": {"tflite-fp32-t1": 0.5}},
    {"candidate": 2, "accuracy": 0.93, "key": "b", "latency_ms": {"tflite-fp32-t1": 0.3},
     "measured_ms": {"tflite-fp32-t1": 0.31}},
    {"candidate": 3, "accuracy": 0.93, "key": "c", "latency_ms": {"tflite-fp32-t1": 0.2}},
]  # fmt: skip


def test_the_best_is_the_most_accurate_within_budget_then_the_fastest():
    best = best_feasible(FRONT, {"tflite-fp32-t1": 0.4})
    assert best == Best(3, 0.93, {"tflite-fp32-t1": 0.2}, "c", None)


def test_a_measured_latency_over_budget_rules_a_candidate_out():
    best = best_feasible(FRONT[:2], {"tflite-fp32-t1": 0.305})
    assert best.candidate == 1  # nothing fits: the most accurate of the front


def test_a_step_reads_and_round_trips_as_its_json():
    step = Step(True, {"run": "demo", "steps": 3})
    assert step.to_json() == {"reused": True, "run": "demo", "steps": 3}
    assert step["steps"] == 3 and step.get("missing") is None
    assert Step.from_json(step.to_json()) == step


def test_a_finished_search_is_reused_when_the_demo_runs_again(ready):
    """The demo run again in its folder: the search step reads the finished search's rounds
    and reuses it (the rounds were read after the session closed, and raised)."""
    from cli_helpers import run_json, search_args

    from hwnas.db.session import open_db
    from hwnas.search.search_config import DemoConfig
    from hwnas.search.services.demo import search_step

    cwd, url = ready
    run_json(*search_args(url, "demo-again", 6, "--budget", "tflite=5"), cwd=cwd)
    cfg = DemoConfig(cwd, run="tiny", search="demo-again", trials=6)
    assert cfg.db_url == url
    with open_db(url, create=False) as db:
        step = search_step(db, cfg)
    assert step.reused and step["search"] == "demo-again"
