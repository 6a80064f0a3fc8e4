"""The measurement protocol, timed on a fake clock: each runner advances it by its latency, so
every figure is exact and no test depends on the machine's load."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from hwnas.exceptions import HwnasError
from hwnas.latency.protocol import Protocol, Stats
from hwnas.latency.timing import (
    combine,
    converged,
    measure,
    median_ci,
    outliers,
    rewarm,
    settled,
    summarise,
)


class FakeClock:
    """`time.perf_counter_ns` for the protocol; runners `spend` milliseconds on it."""

    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns

    def spend(self, ms: float) -> None:
        self.ns += round(ms * 1e6)

    def runner(self, ms: float):
        return lambda: self.spend(ms)


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr("hwnas.latency.timing.time.perf_counter_ns", fake)
    return fake


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


def test_a_runner_stops_once_its_calls_have_taken_the_time_budget():
    p = Protocol(min_reps=20, max_reps=1000, max_ms=100.0, rel_ci=0.0)
    noisy = np.random.default_rng(0).uniform(1.0, 3.0, 60)  # 2 ms a call: 100 ms at 50
    assert not converged(noisy[:19], p) and not converged(noisy[:45], p)
    assert converged(noisy[:55], p)
    fast = noisy / 100  # 0.02 ms a call: the count cap, not the budget, stops it
    assert not converged(fast, p) and converged(np.tile(fast, 17), p)


def test_summary_keeps_the_spread():
    s = summarise(np.array([1.0, 2.0, 3.0, 4.0, 100.0]))
    assert s.median_ms == 3.0 and s.iqr_ms == 2.0 and s.n_reps == 5 and s.cv > 1


def test_measure_times_each_runner(clock):
    runners = {"fast": clock.runner(0.5), "slow": clock.runner(2.0)}
    stats = measure(runners, Protocol(warmup=1, min_reps=10, max_reps=40), seed=1)
    assert stats["fast"].median_ms == pytest.approx(0.5)
    assert stats["slow"].median_ms == pytest.approx(2.0)
    # constant calls: the confidence interval is closed at the fewest repetitions
    assert all(s.n_reps == 10 and s.iqr_ms == pytest.approx(0) for s in stats.values())


def test_every_visit_is_seen_in_the_order_it_ran(clock):
    """`on_visit` gets each visit's timed calls: per runner they add up to its repetitions,
    and the visits come round by round (every runner once before any runner again)."""
    runners = {"a": clock.runner(0.5), "b": clock.runner(1.0), "c": clock.runner(2.0)}
    seen: list[tuple[str, list[float]]] = []
    p = Protocol(warmup=1, per_round=5, min_reps=10, max_reps=40)
    stats = measure(runners, p, seed=2, on_visit=lambda k, t: seen.append((k, t)))
    for key, s in stats.items():
        times = [x for k, t in seen if k == key for x in t]
        assert len(times) == s.n_reps == 10 and np.median(times) == pytest.approx(s.median_ms)
    assert all(len(t) == p.per_round for _, t in seen)
    assert {k for k, _ in seen[:3]} == {k for k, _ in seen[3:]} == set(runners)


def test_noisy_runner_is_measured_again(clock):
    calls = {"n": 0}
    rng = np.random.default_rng(0)

    def jittery():
        calls["n"] += 1
        clock.spend(float(rng.choice([0.2, 1.0])))

    p = Protocol(warmup=1, min_reps=10, max_reps=20)
    stats = measure({"j": jittery}, p, seed=0)
    assert stats["j"].remeasured
    assert calls["n"] > 21  # warm-up + a full second measurement


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


def cold_after_switch(clock: FakeClock, ms: float, cold_calls: int):
    """Runners that take 3x `ms` for their first `cold_calls` calls after another one ran,
    as LiteRT models do on a shared machine."""
    last = {"name": None, "streak": 0}

    def runner(name: str):
        def run():
            if last["name"] != name:
                last["name"], last["streak"] = name, 0
            last["streak"] += 1
            clock.spend(3 * ms if last["streak"] <= cold_calls else ms)

        return run

    return runner


def test_each_visit_is_timed_after_the_switch_transient(clock):
    make = cold_after_switch(clock, 0.4, cold_calls=4)
    runners = {k: make(k) for k in "abcdef"}
    base = Protocol(warmup=1, per_round=5, min_reps=10, max_reps=20, remeasure_iqr=10.0)
    warm = measure(runners, base, seed=0)
    assert all(s.median_ms == pytest.approx(0.4) for s in warm.values())
    # timing from the second call after a switch takes in three slow calls of every five
    # (none where a round ends and the next starts on the same runner: no switch)
    cold = measure(runners, dataclasses.replace(base, rewarm_calls=1), seed=0)
    assert np.median([s.median_ms for s in cold.values()]) > 0.9


def test_rewarm_stops_after_its_time_budget(clock):
    calls = {"n": 0}

    def two_ms():
        calls["n"] += 1
        clock.spend(2.0)

    rewarm(two_ms, Protocol(rewarm_calls=5, rewarm_ms=3.0))
    assert calls["n"] == 2
    rewarm(two_ms, Protocol(rewarm_calls=5, rewarm_ms=100.0))
    assert calls["n"] == 7  # the count stops it first
    rewarm(two_ms, Protocol(rewarm_calls=5, rewarm_ms=0.0))
    assert calls["n"] == 8  # at least one call


def test_passes_split_the_repetitions_and_average_the_medians():
    one = Protocol(min_reps=21, max_reps=200, max_ms=900.0, passes=2).per_pass()
    assert (one.min_reps, one.max_reps, one.max_ms, one.passes) == (11, 100, 450.0, 1)
    a = summarise(np.asarray([1.0, 2.0, 3.0]))
    b = Stats(3.0, 0.3, 1.0, 3, remeasured=True, drift=2.0)  # raw 6.0, the machine 2x slower
    both = combine([a, b])
    assert both.median_ms == pytest.approx((2.0 + 3.0) / 2) and both.n_reps == 6
    assert both.remeasured and both.iqr_ms == pytest.approx(1.0)
    # the raw medians were 2.0 and 6.0: median x drift gives back their mean
    assert both.median_ms * both.drift == pytest.approx(4.0)


def test_a_users_time_budget_keeps_two_calls_per_pass():
    p = Protocol.limited(passes=1, max_reps=10)
    assert (p.passes, p.max_reps, p.min_reps) == (1, 10, 10)
    assert Protocol.limited(2, 1000) == Protocol()
    for passes, max_reps, field in [(0, 100, "passes"), (3, 5, "max_reps")]:
        with pytest.raises(HwnasError) as e:
            Protocol.limited(passes, max_reps)
        assert e.value.field == field  # the setting at fault, for the caller to name


def test_visits_in_a_slow_spell_are_set_aside(clock):
    """A runner whose calls run 1.5x slower for 14 ms of every 19 (another process on its
    core; 65% of its calls): the median of all calls is the slow spell's, the median of the
    settled visits the runner's own."""

    def spells():
        clock.spend(0.15 if (clock.ns // 1_000_000) % 19 < 14 else 0.1)

    p = Protocol(warmup=1, min_reps=200, max_reps=200, remeasure_iqr=10.0, settle_tol=0.1)
    assert measure({"j": spells}, p)["j"].median_ms == pytest.approx(0.1)
    every = measure({"j": spells}, dataclasses.replace(p, settle_tol=math.inf))["j"]
    assert every.median_ms == pytest.approx(0.15)
    assert every.n_reps == 200  # every timed call is counted, set aside or not


def test_settled_visits_are_those_near_the_quarter_of_the_fastest():
    visits = [[1.0] * 3, [1.0, 1.0, 9.0], [1.5] * 3, [1.05] * 3, [1.2] * 3]
    assert settled(visits, 0.1) == [0, 1, 3]
    assert settled(visits, math.inf) == [0, 1, 2, 3, 4]
    assert settled([[2.0, 3.0]], 0.1) == [0]  # a runner visited once keeps its calls
    assert settled([[0.0], [0.0]], math.inf) == [0, 1]  # calls of no time (inf x 0 is NaN)
