from __future__ import annotations

import time

import numpy as np
import pytest

from latency.protocol import Protocol, converged, measure, median_ci, outliers, summarise


def busy(ms: float):
    def run():
        end = time.perf_counter() + ms / 1e3
        while time.perf_counter() < end:
            pass

    return run


def test_median_ci_brackets_the_median_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.normal(10, 1, 30), rng.normal(10, 1, 3000)
    for s in (small, large):
        lo, hi = median_ci(s)
        assert lo <= np.median(s) <= hi
    assert np.subtract(*median_ci(large)[::-1]) < np.subtract(*median_ci(small)[::-1])


def test_stopping_rule():
    p = Protocol(min_reps=20, max_reps=100, rel_ci=0.01)
    assert not converged(np.full(10, 1.0), p)
    assert converged(np.full(20, 1.0), p)
    noisy = np.random.default_rng(0).exponential(1.0, 50)
    assert not converged(noisy, p)
    assert converged(np.random.default_rng(0).exponential(1.0, 100), p)


def test_summary_keeps_the_spread():
    s = summarise(np.array([1.0, 2.0, 3.0, 4.0, 100.0]))
    assert s.median_ms == 3.0 and s.iqr_ms == 2.0 and s.n_reps == 5 and s.cv > 1


def test_measure_orders_and_sizes_busy_loops():
    runners = {"fast": busy(0.5), "slow": busy(2.0)}
    stats = measure(runners, Protocol(warmup=1, min_reps=10, max_reps=40), seed=1)
    assert stats["fast"].median_ms == pytest.approx(0.5, rel=0.5)
    assert stats["slow"].median_ms == pytest.approx(2.0, rel=0.5)
    assert stats["slow"].median_ms > 2 * stats["fast"].median_ms
    assert all(10 <= s.n_reps <= 40 for s in stats.values())


def test_noisy_runner_is_measured_again():
    calls = {"n": 0}
    rng = np.random.default_rng(0)

    def jittery():
        calls["n"] += 1
        busy(float(rng.choice([0.2, 1.0])))()

    stats = measure({"j": jittery}, Protocol(warmup=1, min_reps=10, max_reps=20), seed=0)
    assert stats["j"].remeasured
    assert calls["n"] > 21  # warm-up + a full second measurement


def test_rescaled_divides_times_by_the_drift():
    st = summarise(np.asarray([2.0, 4.0, 6.0, 8.0])).rescaled(2.0)
    assert st.median_ms == 2.5 and st.iqr_ms == 1.5 and st.drift == 2.0
    assert st.to_dict()["drift"] == 2.0


def test_outliers_are_relative_to_the_runners_measured_together():
    p = Protocol(remeasure_iqr=0.10)
    spread = {f"r{i}": summarise(np.asarray([8.0, 9.0, 10.0, 11.0, 12.0])) for i in range(9)}
    # every runner's IQR is 20% of its median: a runtime's own spread, not interference
    assert outliers(spread, p) == []
    spread["loud"] = summarise(np.asarray([5.0, 7.0, 10.0, 13.0, 15.0]))
    assert outliers(spread, p) == ["loud"]
    # too few runners to compare: the absolute threshold alone
    few = {"a": spread["r0"], "b": spread["r1"]}
    assert outliers(few, p) == ["a", "b"]
    quiet = {f"q{i}": summarise(np.asarray([9.9, 10.0, 10.1])) for i in range(9)}
    assert outliers(quiet | {"x": spread["r0"]}, p) == ["x"]
