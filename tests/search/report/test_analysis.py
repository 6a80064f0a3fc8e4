"""The report's computed figures on hand-made candidates whose answers are known."""

from __future__ import annotations

import numpy as np

from hwnas.search.report.analysis import front_of, hv_curve, specialisation


def cand(i, acc, cpu, tfl, pareto=True, feasible=True, measured=None):
    return {"candidate": i, "accuracy": acc, "predicted_ms": {"cpu": cpu, "tfl": tfl},
            "measured_ms": measured or {}, "pareto": pareto, "feasible": feasible}  # fmt: skip


# Subnet 1 is fast on cpu but slow on tfl; subnet 2 the other way round; 3 is more accurate.
CANDS = [cand(1, 0.90, 1.0, 4.0), cand(2, 0.90, 3.0, 1.0), cand(3, 0.95, 5.0, 5.0)]
ODD = 267 / 270  # an accuracy that no short decimal rounds to exactly


def test_specialisation_prices_the_wrong_choice():
    rows = specialisation(CANDS, "cpu", "tfl")
    assert [r["accuracy"] for r in rows] == [0.95, 0.90]
    top, low = rows
    assert top["other"] == top["own"] == 3 and top["slowdown"] == 1.0
    assert (low["other"], low["own"]) == (1, 2)
    assert low["other_ms"] == 4.0 and low["own_ms"] == 1.0 and low["slowdown"] == 4.0


def test_specialisation_compares_measured_with_measured_only():
    both = [cand(1, 0.90, 1.0, 4.0, measured={"tfl": 3.0}), cand(2, 0.90, 3.0, 1.0,
            measured={"tfl": 2.0}), CANDS[2]]  # fmt: skip
    low = specialisation(both, "cpu", "tfl")[1]
    assert low["measured"] and (low["other_ms"], low["own_ms"], low["slowdown"]) == (3.0, 2.0, 1.5)
    one = [CANDS[0], cand(2, 0.90, 3.0, 1.0, measured={"tfl": 2.0}), CANDS[2]]
    low = specialisation(one, "cpu", "tfl")[1]
    assert not low["measured"] and low["slowdown"] == 4.0  # both predicted


def test_hypervolume_grows_with_trials_and_ignores_infeasible():
    rng = np.random.default_rng(0)
    cands = [cand(i, rng.uniform(0.8, 1), rng.uniform(1, 5), 1.0, feasible=i % 3 > 0)
             for i in range(60)]  # fmt: skip
    curve = hv_curve(cands, "cpu")
    hv = np.asarray(curve["hypervolume"])
    assert curve["trials"][-1] == 60 and np.all(np.diff(hv) >= -1e-12) and 0 < hv[-1] < 1
    only_infeasible = [dict(c, feasible=False) for c in cands]
    assert max(hv_curve(only_infeasible, "cpu")["hypervolume"]) == 0.0


def test_front_of_one_target():
    assert [c["candidate"] for c in front_of(CANDS, "tfl")] == [2, 3]
    assert [c["candidate"] for c in front_of(CANDS, "cpu")] == [1, 3]


def test_specialisation_at_unrounded_accuracies_and_only_within_budget():
    cands = [cand(1, ODD, 1.0, 4.0), cand(2, ODD, 3.0, 1.0), cand(4, 0.99, 0.5, 0.5, False, False)]
    rows = specialisation(cands, "cpu", "tfl")
    assert [r["accuracy"] for r in rows] == [ODD]
    assert (rows[0]["other"], rows[0]["own"], rows[0]["slowdown"]) == (1, 2, 4.0)
