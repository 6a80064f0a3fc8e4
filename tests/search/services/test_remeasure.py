"""A measured front against its predictions (`budget_check`): which subnets disagree, and the
check read back from the JSON a round stores."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from hwnas.search.services.remeasure import FrontCheck, budget_check

KEY = "tflite-fp32-t1"


def test_the_subnets_beyond_10_percent_are_named_worst_first():
    front = [SimpleNamespace(id=i, predicted_ms={KEY: 1.0}) for i in range(5)]
    measured = {0: {KEY: 1.05}, 1: {KEY: 0.6}, 2: {KEY: 1.2}, 3: {KEY: 0.95}, 4: {KEY: 1.1}}
    check = budget_check(front, measured, {KEY: 1.15})[KEY]
    assert [d.candidate for d in check.disagree] == [1, 2]  # 4 is at 10% exactly: within
    assert [d.off for d in check.disagree] == pytest.approx([1 / 0.6 - 1, 1 / 1.2 - 1])
    assert check.within10_of_predicted == 3 / 5 and check.within_budget == 4 / 5
    again = FrontCheck.from_json(check.to_json())
    assert again == check and again.disagree[0].measured_ms == 0.6


def test_a_front_that_agrees_stores_no_disagreement():
    front = [SimpleNamespace(id=1, predicted_ms={KEY: 2.0})]
    check = budget_check(front, {1: {KEY: 2.1}}, {})[KEY]
    assert check.disagree == () and "disagree" not in check.to_json()
