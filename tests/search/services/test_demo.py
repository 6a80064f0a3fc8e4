"""The demo's summary, from a real `hwnas demo --json` result (tests/data/demo_result.json: the
demo run on this machine, paths replaced): each step's line, with the time each timed step took,
and the JSON round trip of the typed result."""

from __future__ import annotations

import json
from pathlib import Path

from hwnas.search.services.demo import DemoResult, summary_text

RESULT = json.loads((Path(__file__).parents[2] / "data" / "demo_result.json").read_text())


def test_the_summary_says_each_step_with_its_time():
    result = DemoResult.from_json(RESULT)
    lines = summary_text(result).splitlines()
    assert lines[0] == f"hwnas demo: done in {result.seconds:.0f} s"
    by_start = {line.split()[0]: line for line in lines[1:]}
    assert by_start["supernet"].endswith(f"[{result.step_seconds['train']:.0f} s]")
    assert by_start["search"].endswith(f"[{result.step_seconds['search']:.0f} s]")
    assert by_start["export"].endswith(f"[{result.step_seconds['export']:.0f} s]")
    # one line per target's predictor, and no line for anything that is not a target
    targets = sorted(result.steps["predictors"])
    assert sorted(k for k in by_start if k in result.steps["measure"]) == targets
    rounds = [line for line in lines if line.lstrip().startswith("round ")]
    assert len(rounds) == len(result.steps["search"]["rounds"])
    assert lines[-3] == f"open the dashboard: {result.next}"


def test_a_reused_step_says_so():
    steps = RESULT["steps"] | {"train": RESULT["steps"]["train"] | {"reused": True}}
    text = summary_text(DemoResult.from_json(RESULT | {"steps": steps}))
    assert "(smallest) [reused]" in text


def test_the_result_is_json_as_the_cli_prints_it():
    assert json.loads(json.dumps(DemoResult.from_json(RESULT).to_json())) == RESULT
