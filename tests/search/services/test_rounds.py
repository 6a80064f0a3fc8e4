"""Between the rounds of the closed loop (`search.rounds`), on a real SQLite file."""

from __future__ import annotations

import pytest
from search_helpers import make_search, trial

from db.models import Candidate
from db.session import open_db
from search import candidates
from search.objective import Problem
from search.output import UserError
from search.services import rounds

KEY = "tflite-fp32-t1"


def agreement(share: float) -> dict:
    return {KEY: {"n": 4, "within10_of_predicted": share, "worst_off": 0.2}}


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
