"""What `hwnas export` reads and writes: the candidate it starts from, and the export's row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hwnas.db.models import Candidate, Export, Run, Search
from hwnas.db.session import Database


@dataclass(frozen=True)
class CandidateOrigin:
    """A candidate's subnet (as stored), the name of the run whose supernet it is, and its
    latency as its search last predicted it on each of the search's targets."""

    candidate: int
    run: str
    subnet: dict[str, Any]
    predicted_ms: dict[str, float] = field(default_factory=dict)


def candidate_origin(db: Database, candidate: int) -> CandidateOrigin | None:
    """Where candidate `candidate` comes from (None: no such candidate)."""
    with db.read() as s:
        cand = s.get(Candidate, candidate)
        if cand is None:
            return None
        search = s.get(Search, cand.search_id)
        run = s.get(Run, search.run_id) if search is not None else None
        if run is None or search is None:
            return None
        predicted = {k: float(v) for k, v in cand.predicted_ms.items() if k in search.targets}
        return CandidateOrigin(candidate, run.name, dict(cand.subnet), predicted)


def record_export(db: Database, row: Export) -> int:
    """Store an export's row; its id."""
    with db.write() as s:
        s.add(row)
        s.flush()
        return row.id
