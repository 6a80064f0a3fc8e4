"""What the dashboard shows, read through `db/view_store.py` in read-only sessions (never a
write lock, so a search writing to the same SQLite file is neither slowed nor broken). Plain
functions of an open `Database` returning pandas frames or plain values, so pages stay thin
and tests can call them."""

from __future__ import annotations

from typing import Any

import pandas as pd

from hwnas.db import view_store
from hwnas.db.session import Database
from hwnas.latency.metrics import agreement
from hwnas.search import storage

SEARCH_COLUMNS = ["search", "run", "targets", "budgets", "sampler", "status", "trials",
                  "running", "candidates", "best_feasible_accuracy", "created"]  # fmt: skip
FRAME_COLUMNS = ["candidate", "search", "trial", "key", "accuracy", "accuracy_supernet", "params",
                 "macs", "feasible", "pareto", "round", "extrapolated"]  # fmt: skip


def trial_states(db: Database) -> dict[str, dict[str, int]]:
    """Optuna's trial counts per study and state, live (before candidates are synced)."""
    with db.read() as s:
        return storage.trial_states(s)


def searches(db: Database) -> pd.DataFrame:
    states = trial_states(db)
    data = [_search_row(line, states) for line in view_store.search_lines(db)]
    return pd.DataFrame(data, columns=SEARCH_COLUMNS)


def _search_row(line: view_store.SearchLine, states: dict[str, dict[str, int]]) -> list[Any]:
    x = line.search
    st = states.get(x.study_name, {})
    return [
        x.name, line.run, ", ".join(x.targets),
        ", ".join(f"{k} <= {v:g} ms" for k, v in x.budgets.items()) or "none",
        x.sampler, x.status, st.get("COMPLETE", 0), st.get("RUNNING", 0),
        line.candidates, line.best_feasible, x.created_at,
    ]  # fmt: skip


def candidates(db: Database, search_names: list[str]) -> pd.DataFrame:
    """Every candidate of the named searches, one row each, latency columns per target (the
    subnet itself comes from `candidate_subnet` for the one selected)."""
    rows = view_store.candidate_points(db, search_names)
    df = pd.DataFrame([r[:-2] for r in rows], columns=FRAME_COLUMNS)
    df["extrapolated"] = [", ".join(x or ()) for x in df["extrapolated"]]
    for prefix, lat in (("predicted", [r.predicted_ms for r in rows]),
                        ("measured", [r.measured_ms for r in rows])):  # fmt: skip
        frame = pd.DataFrame.from_records([x or {} for x in lat], index=df.index)
        df = df.join(frame.add_prefix(f"{prefix}:"))
    return df


def candidates_version(db: Database, search_names: list[str]) -> tuple[Any, ...]:
    """Changes whenever the candidates of these searches do: the key under which a page may
    reuse `candidates`."""
    return view_store.candidates_version(db, search_names)


def candidate_subnet(db: Database, candidate_id: int) -> dict[str, Any]:
    subnet = view_store.candidate_subnet(db, candidate_id)
    if subnet is None:
        raise LookupError(f"no candidate {candidate_id} in this database")
    return subnet


def search_budgets(db: Database, names: list[str]) -> dict[str, dict[str, float]]:
    return view_store.search_budgets(db, names)


def targets(db: Database) -> list[str]:
    return view_store.target_keys_by_name(db)


def measurements(db: Database, target: str) -> pd.DataFrame:
    rows = [
        {"key": m.subnet_key, "subnet": m.subnet, "median_ms": m.median_ms, "cv": m.cv,
         "n_reps": m.n_reps, "remeasured": m.remeasured, "run_id": m.run_id}
        for m in view_store.target_measurements(db, target)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def predictors(db: Database, target: str) -> dict[str, dict[str, Any]]:
    """The target's own latest predictor of each kind (not a search's round refits): its
    held-out figures."""
    with db.read() as s:
        rows = view_store.own_predictors(s, target)
        return {p.kind: {"n_train": p.n_train, **p.metrics} for p in rows}


def runs(db: Database) -> pd.DataFrame:
    rows = [
        {"run": r.name, "dataset": r.dataset, "status": r.status, "steps": r.steps,
         "minutes": r.seconds / 60, "val_acc_largest": r.val_acc_largest,
         "val_acc_smallest": r.val_acc_smallest, "created": r.created_at}
        for r in view_store.all_runs(db)
    ]  # fmt: skip
    return pd.DataFrame(rows)


def epochs(db: Database, run: str) -> pd.DataFrame:
    rows = [
        {"epoch": e.epoch, "step": e.step, **e.metrics} for e in view_store.run_epochs(db, run)
    ]
    return pd.DataFrame(rows)


def checkpoints(db: Database, run: str) -> pd.DataFrame:
    rows = [{"step": c.step, "path": c.path, "bytes": c.bytes, "sha256": c.sha256[:16],
             "created": c.created_at} for c in view_store.run_checkpoints(db, run)]  # fmt: skip
    return pd.DataFrame(rows)


def exports(db: Database, candidate: int) -> list[dict[str, Any]]:
    rows = view_store.candidate_exports(db, candidate)
    return [{"precision": e.precision, "path": e.path, "sha256": e.sha256, "bytes": e.bytes,
             **e.proof} for e in rows]  # fmt: skip


def noise(meas: pd.DataFrame) -> dict[str, float] | None:
    """Subnets measured more than once: how often two measurements agree within 5% / 10%."""
    groups = [g["median_ms"].to_numpy() for _, g in meas.groupby("key") if len(g) > 1]
    if not groups:
        return None
    a = agreement([g[-1] for g in groups], [g[0] for g in groups])
    return {
        "subnets measured twice": len(groups),
        "within 5%": a["within5"],
        "within 10%": a["within10"],
        "median difference": a["median_rel_diff"],
    }
