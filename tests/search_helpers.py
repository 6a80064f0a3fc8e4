"""A search's rows without a search: a finished run and search in the database, and Optuna
trials carrying candidates, for the tests of candidates and of the closed loop's rounds."""

from __future__ import annotations

import optuna

from hwnas.db.models import Run, Search
from hwnas.supernet.space import load_space


def trial(number: int, acc: float, ms: float, key: str | None = None):
    cand = {
        "subnet": {"resolution": 8}, "key": key or f"s{number}", "accuracy": acc,
        "latency_ms": {"t": ms}, "params": 1, "macs": 2,
    }  # fmt: skip
    t = optuna.trial.create_trial(
        values=[acc, ms], params={}, distributions={}, user_attrs={"candidate": cand}
    )
    t.number = number
    return t


def make_search(db) -> int:
    with db.write() as s:
        space = load_space("digits").to_dict()
        run = Run(name="r", dataset="digits", space=space, config={}, status="finished")
        s.add(run)
        s.flush()
        row = Search(name="s", run_id=run.id, study_name="s", targets=["t"], budgets={"t": 3.0},
                     sampler="tpe", seed=0)  # fmt: skip
        s.add(row)
        s.flush()
        return row.id
