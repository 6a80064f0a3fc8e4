"""Between the rounds of the closed loop (`search/services/rounds.py`), on a real SQLite file."""

from __future__ import annotations

import pytest
from search_helpers import make_search, trial

from hwnas.db.models import Candidate
from hwnas.db.session import open_db
from hwnas.search import candidates
from hwnas.search.objective import Problem
from hwnas.search.output import UserError
from hwnas.search.services import rounds
from hwnas.search.services.remeasure import FrontCheck

KEY = "tflite-fp32-t1"


def agreement(share: float) -> dict:
    return {KEY: FrontCheck(n=4, median_measured_over_predicted=1.0,
                            within10_of_predicted=share, worst_off=0.2)}  # fmt: skip


def test_only_targets_whose_front_disagreed_are_refitted(sqlite_url):
    with open_db(sqlite_url) as db:
        sid = make_search(db)
        candidates.sync(db, sid, [trial(0, 0.9, 1.0)], Problem(("t",)))
        with db.write() as s:
            s.query(Candidate).update({Candidate.measured_ms: {KEY: 1.2}})
        state = rounds.RoundState(0, "s", ((KEY, 7),), 10, agreement(1.0))
        assert rounds.refit(db, "s", sid, state, 1) == {KEY: 7}  # agreed: kept
        # disagreed: refitted from the target's measurements, of which this database has none
        disagreed = rounds.RoundState(0, "s", ((KEY, 7),), 10, agreement(0.5))
        with pytest.raises(UserError, match=KEY):
            rounds.refit(db, "s", sid, disagreed, 1)


@pytest.mark.parametrize(("share", "agrees"), [(1.0, True), (0.9, False)])
def test_the_loop_stops_when_every_front_subnet_agrees(share, agrees):
    assert rounds.agrees(agreement(share)) is agrees
    assert not rounds.agrees({}) and not rounds.agrees(None)


def test_a_predictor_driven_front_is_settled_when_a_round_brings_no_new_subnet(sqlite_url):
    problem = Problem(("t",))
    with open_db(sqlite_url) as db:
        sid = make_search(db)

        def round_(r: int, trials: list, evaluated: int) -> dict:
            candidates.sync(db, sid, trials, problem, r)
            candidates.mark_pareto(db, sid, problem)
            return rounds.record_accuracy_front(db, sid, r, evaluated).to_json()

        state = rounds.begin(db, sid, "s", {"t": 1}, 2, 1, accuracy_predictor=5)
        first = round_(0, [trial(0, 0.9, 1.0), trial(1, 0.8, 0.5)], 2)
        assert (first["n"], first["new"], first["rescored"]) == (2, 2, 2)
        assert not rounds.settled(rounds.AccuracyFront.from_json(first))  # all new at first
        state = rounds.start(db, sid, state, {"t": 1}, 3, 5)
        second = round_(1, [trial(2, 0.7, 0.9)], 1)  # behind the front
        assert (second["n"], second["new"]) == (2, 0) and rounds.settled(
            rounds.AccuracyFront.from_json(second)
        )
        state = rounds.start(db, sid, state, {"t": 1}, 4, 5)
        third = round_(2, [trial(3, 0.95, 0.4)], 1)  # dominates both: the front is new
        assert (third["n"], third["new"]) == (1, 1) and not rounds.settled(
            rounds.AccuracyFront.from_json(third)
        )
        assert [r.to_json()["accuracy_front"] for r in rounds.history(db, sid)] == [
            {"rescored": 2, "n": 2, "new": 2}, {"rescored": 1, "n": 2, "new": 0},
            {"rescored": 1, "n": 1, "new": 1},
        ]  # fmt: skip
    assert rounds.settled(None)  # a supernet-driven round has nothing to settle


def test_the_sampler_is_told_the_supernets_accuracy_where_a_trial_has_one():
    cand = {"accuracy": 0.8, "accuracy_supernet": None, "latency_ms": {"t": 1.0}}
    assert rounds.told(cand) == cand
    assert rounds.told(cand | {"accuracy_supernet": 0.9})["accuracy"] == 0.9
