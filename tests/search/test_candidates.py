"""Candidates on real SQLite and PostgreSQL: live rows, reconciliation with the study, the
front over feasible and distinct subnets."""

from __future__ import annotations

from search_helpers import make_search, trial
from sqlalchemy import select

from hwnas.db.models import Candidate
from hwnas.db.session import open_db
from hwnas.search import candidates
from hwnas.search.objective import Problem

PROBLEM = Problem(("t",), budgets=(("t", 3.0),))


def test_rows_sync_and_the_front(db_url):
    db = open_db(db_url)
    sid = make_search(db)
    trials = [
        trial(0, 0.90, 1.0),
        trial(1, 0.95, 2.0),
        trial(2, 0.93, 2.5),  # dominated by 1
        trial(3, 0.99, 4.0),  # best, but over the budget
        trial(4, 0.95, 2.0, key="s1"),  # the same subnet as trial 1, found again
    ]
    recorder = candidates.Recorder(db, sid, PROBLEM)
    recorder(None, trials[0])
    recorder(None, trials[1])
    recorder(None, trials[1])  # recorded twice (a sync elsewhere won the race): no error
    assert candidates.sync(db, sid, trials, PROBLEM) == 3
    assert candidates.sync(db, sid, trials, PROBLEM) == 0
    assert candidates.mark_pareto(db, sid, PROBLEM) == 2
    with db.read() as s:
        rows = {c.trial_number: c for c in s.scalars(select(Candidate))}
    assert [n for n, c in sorted(rows.items()) if c.pareto] == [0, 1]
    assert not rows[3].feasible and rows[1].feasible
    db.dispose()
