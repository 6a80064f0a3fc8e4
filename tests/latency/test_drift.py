"""Drift taken out per visit by the reference visits nearest in time (`latency/drift.py`)."""

from __future__ import annotations

import pytest

from hwnas.latency.drift import corrected, visit_factors


def slowing_chunk() -> list[tuple[str, list[float]]]:
    """Visits of two references (baseline 10 and 20 ms) and two jobs (5 and 50 ms) in four
    rounds; the machine runs 1.5x slower from the third round on."""
    visits = []
    for r in range(4):
        slow = 1.5 if r >= 2 else 1.0
        for key, ms in (("ref-a", 10.0), ("job-5", 5.0), ("ref-b", 20.0), ("job-50", 50.0)):
            visits.append((key, [ms * slow] * 5))
    return visits


BASELINE = {"ref-a": 10.0, "ref-b": 20.0}


def test_each_visit_gets_the_drift_of_the_references_near_it():
    factors = visit_factors(slowing_chunk(), BASELINE, k=2)
    assert factors[:7] == [1.0] * 7 and factors[9:] == [1.5] * 7
    out = corrected(slowing_chunk(), BASELINE, k=2)
    # one factor for the chunk (1.25) would have left the jobs 25% apart between rounds
    assert out["job-5"].median_ms == pytest.approx(5.0) and out["job-5"].iqr_ms < 0.1
    assert out["job-50"].median_ms == pytest.approx(50.0)
    assert out["job-50"].drift == pytest.approx(1.25)  # raw median over the corrected one
    assert out["job-50"].n_reps == 20


def test_a_measurement_without_references_is_refused():
    with pytest.raises(ValueError, match="no reference"):
        visit_factors([("job", [1.0])], BASELINE)


def test_a_jobs_own_slow_visits_are_set_aside_after_the_drift():
    """Half of one job's visits ran 2x slow while the references did not (something held its
    core): set aside within `tol`, pooled with an infinite one."""
    visits = slowing_chunk()
    for i in (1, 5):  # job-5's visits in rounds 0 and 1, before the machine slows
        assert visits[i][0] == "job-5"
        visits[i] = ("job-5", [10.0] * 5)
    settled = corrected(visits, BASELINE, k=2, tol=0.1)["job-5"]
    assert settled.median_ms == pytest.approx(5.0) and settled.n_reps == 20
    assert settled.drift == pytest.approx(1.5)  # the visits kept ran on the slowed machine
    assert corrected(visits, BASELINE, k=2)["job-5"].median_ms == pytest.approx(7.5)
