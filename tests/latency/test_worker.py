"""`measure_jobs`' passes and drift references, with each chunk's measurement scripted (the
real runtimes are exercised in tests/search/test_latency_cli.py)."""

from __future__ import annotations

import pytest

import hwnas.latency.worker as worker
from hwnas.latency.jobs import Job
from hwnas.latency.protocol import Protocol, Stats
from hwnas.latency.targets import Target


def jobs(n: int) -> list[Job]:
    return [Job(f"j{i}", Target("tflite"), f"k{i}", {}, "subnet", {}) for i in range(n)]


def scripted(monkeypatch, slower_by_pass: list[float]) -> list[set[str]]:
    """Job i takes (i + 1) ms times `slower_by_pass[c]` in the c-th chunk measured (one chunk
    per pass in these tests); returns which jobs each chunk measured."""
    seen: list[set[str]] = []

    def measure_chunk(part, refs, base, protocol, seed):
        ids = {j.id for j in part} | {r.id for r in refs}
        seen.append(ids)
        factor = slower_by_pass[min(len(seen) - 1, len(slower_by_pass) - 1)]
        ms = {k: (int(k[1:]) + 1) * factor for k in sorted(ids)}
        visits = [(k, [v] * 10) for k, v in ms.items()]
        return {k: Stats(v, 0.0, 0.0, 10) for k, v in ms.items()}, visits

    monkeypatch.setattr(worker, "_measure_chunk", measure_chunk)
    return seen


def test_the_drift_between_passes_is_taken_out(monkeypatch):
    seen = scripted(monkeypatch, [1.0, 1.1])
    out = worker.measure_jobs(jobs(20), None, Protocol(passes=2), chunk=20)
    assert len(seen) == 2 and all(len(s) == 20 for s in seen)  # refs inside the one chunk
    for i, r in enumerate(out):
        assert r.stats["median_ms"] == pytest.approx(i + 1)  # pass 2 scaled back by 1.1
        assert r.stats["median_ms"] * r.stats["drift"] == pytest.approx((i + 1) * 1.05)
        assert r.stats["n_reps"] == 20


def test_jobs_that_are_all_references_average_their_passes_uncorrected(monkeypatch):
    scripted(monkeypatch, [1.0, 1.1])
    (one,) = worker.measure_jobs(jobs(1), None, Protocol(passes=2))
    # scaled onto itself the second pass would have been thrown away (1.0)
    assert one.stats["median_ms"] == pytest.approx(1.05) and one.stats["drift"] == 1.0


def test_one_pass_one_chunk_has_no_references(monkeypatch):
    seen = scripted(monkeypatch, [1.0, 1.0])
    out = worker.measure_jobs(jobs(30), None, Protocol(passes=1), chunk=100)
    assert len(seen) == 1 and all(r.stats["drift"] == 1.0 for r in out)
