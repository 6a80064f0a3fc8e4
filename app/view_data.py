"""What the dashboard shows, read through `db/` in read-only sessions (never a write lock, so a
search writing to the same SQLite file is neither slowed nor broken). Plain functions of an open
`Database` returning pandas frames or dicts, so pages stay thin and tests can call them."""

from __future__ import annotations

import pandas as pd
from hwnas.db.models import (
    Candidate,
    Checkpoint,
    EpochMetric,
    Export,
    Measurement,
    Predictor,
    Run,
    Search,
)
from hwnas.db.models import Target as TargetRow
from hwnas.db.session import Database
from hwnas.latency.metrics import agreement
from hwnas.search import storage
from sqlalchemy import String, case, cast, func, select

SEARCH_COLUMNS = ["search", "run", "targets", "budgets", "sampler", "status", "trials",
                  "running", "candidates", "best_feasible_accuracy", "created"]  # fmt: skip


def trial_states(db: Database) -> dict[str, dict[str, int]]:
    """Optuna's trial counts per study and state, live (before candidates are synced)."""
    with db.read() as s:
        return storage.trial_states(s)


def searches(db: Database) -> pd.DataFrame:
    states = trial_states(db)
    with db.read() as s:
        best = dict(
            s.execute(
                select(Candidate.search_id, func.max(Candidate.accuracy))
                .where(Candidate.feasible)
                .group_by(Candidate.search_id)
            ).all()
        )
        q = select(Candidate.search_id, func.count()).group_by(Candidate.search_id)
        counts = dict(s.execute(q).all())
        rows = s.execute(select(Search, Run.name).join(Run).order_by(Search.id)).all()
        data = [_search_row(x, run, states, best, counts) for x, run in rows]
    return pd.DataFrame(data, columns=SEARCH_COLUMNS)


def _search_row(x: Search, run: str, states: dict, best: dict, counts: dict) -> list:
    st = states.get(x.study_name, {})
    return [
        x.name, run, ", ".join(x.targets),
        ", ".join(f"{k} <= {v:g} ms" for k, v in x.budgets.items()) or "none",
        x.sampler, x.status, st.get("COMPLETE", 0), st.get("RUNNING", 0),
        counts.get(x.id, 0), best.get(x.id), x.created_at,
    ]  # fmt: skip


CANDIDATE_COLUMNS = (Candidate.id, Search.name, Candidate.trial_number, Candidate.subnet_key,
                     Candidate.accuracy, Candidate.accuracy_supernet, Candidate.params,
                     Candidate.macs, Candidate.feasible,
                     Candidate.pareto, Candidate.round, Candidate.extrapolated,
                     Candidate.predicted_ms, Candidate.measured_ms)  # fmt: skip
FRAME_COLUMNS = ("candidate", "search", "trial", "key", "accuracy", "accuracy_supernet", "params",
                 "macs", "feasible", "pareto", "round", "extrapolated")  # fmt: skip


def candidates(db: Database, search_names: list[str]) -> pd.DataFrame:
    """Every candidate of the named searches, one row each, latency columns per target (plain
    columns, not ORM objects: 10,000 candidates load in a fraction of a second; the subnet
    itself comes from `candidate_subnet` for the one selected)."""
    with db.read() as s:
        q = (
            select(*CANDIDATE_COLUMNS)
            .join(Search)
            .where(Search.name.in_(search_names))
            .order_by(Candidate.id)
        )
        rows = s.execute(q).all()
    df = pd.DataFrame([r[:-2] for r in rows], columns=list(FRAME_COLUMNS))
    df["extrapolated"] = [", ".join(x or ()) for x in df["extrapolated"]]
    for prefix, i in (("predicted", -2), ("measured", -1)):
        lat = pd.DataFrame.from_records([r[i] or {} for r in rows], index=df.index)
        df = df.join(lat.add_prefix(f"{prefix}:"))
    return df


def candidates_version(db: Database, search_names: list[str]) -> tuple:
    """Changes whenever the candidates of these searches do (new trials, a new front, new
    measurements, a closed-loop round's re-scoring): the key under which a page may reuse
    `candidates`."""
    with db.read() as s:
        q = (
            select(func.count(Candidate.id), func.max(Candidate.id),
                   func.sum(case((Candidate.pareto, 1), else_=0)),
                   func.sum(func.length(cast(Candidate.measured_ms, String))),
                   func.sum(Candidate.scored_round), func.max(Search.id),
                   func.count(Candidate.accuracy_supernet))
            .join(Search)
            .where(Search.name.in_(search_names))
        )  # fmt: skip
        return tuple(s.execute(q).one())


def candidate_subnet(db: Database, candidate_id: int) -> dict:
    with db.read() as s:
        return dict(s.get(Candidate, candidate_id).subnet)


def search_budgets(db: Database, names: list[str]) -> dict[str, dict[str, float]]:
    with db.read() as s:
        return {
            x.name: dict(x.budgets)
            for x in s.scalars(select(Search).where(Search.name.in_(names)))
        }


def targets(db: Database) -> list[str]:
    with db.read() as s:
        return list(s.scalars(select(TargetRow.key).order_by(TargetRow.key)))


def measurements(db: Database, target: str) -> pd.DataFrame:
    with db.read() as s:
        q = (
            select(Measurement)
            .join(TargetRow)
            .where(TargetRow.key == target, Measurement.kind == "subnet")
            .order_by(Measurement.id)
        )
        rows = [
            {"key": m.subnet_key, "subnet": m.subnet, "median_ms": m.median_ms, "cv": m.cv,
             "n_reps": m.n_reps, "remeasured": m.remeasured, "run_id": m.run_id}
            for m in s.scalars(q)
        ]  # fmt: skip
    return pd.DataFrame(rows)


def predictors(db: Database, target: str) -> dict[str, dict]:
    """The target's own latest predictor of each kind (not a search's round refits): its
    held-out figures."""
    with db.read() as s:
        q = (
            select(Predictor)
            .join(TargetRow)
            .where(TargetRow.key == target, Predictor.name.is_(None))
            .order_by(Predictor.id)
        )
        return {p.kind: {"n_train": p.n_train, **p.metrics} for p in s.scalars(q)}


def runs(db: Database) -> pd.DataFrame:
    with db.read() as s:
        rows = [
            {"run": r.name, "dataset": r.dataset, "status": r.status, "steps": r.steps,
             "minutes": r.seconds / 60, "val_acc_largest": r.val_acc_largest,
             "val_acc_smallest": r.val_acc_smallest, "created": r.created_at}
            for r in s.scalars(select(Run).order_by(Run.id))
        ]  # fmt: skip
    return pd.DataFrame(rows)


def epochs(db: Database, run: str) -> pd.DataFrame:
    with db.read() as s:
        q = select(EpochMetric).join(Run).where(Run.name == run).order_by(EpochMetric.epoch)
        rows = [{"epoch": e.epoch, "step": e.step, **e.metrics} for e in s.scalars(q)]
    return pd.DataFrame(rows)


def checkpoints(db: Database, run: str) -> pd.DataFrame:
    with db.read() as s:
        q = select(Checkpoint).join(Run).where(Run.name == run).order_by(Checkpoint.step)
        rows = [{"step": c.step, "path": c.path, "bytes": c.bytes, "sha256": c.sha256[:16],
                 "created": c.created_at} for c in s.scalars(q)]  # fmt: skip
    return pd.DataFrame(rows)


def exports(db: Database, candidate: int) -> list[dict]:
    with db.read() as s:
        q = select(Export).where(Export.candidate_id == candidate).order_by(Export.id)
        return [{"precision": e.precision, "path": e.path, "sha256": e.sha256,
                 "bytes": e.bytes, **e.proof} for e in s.scalars(q)]  # fmt: skip


def noise(meas: pd.DataFrame) -> dict | None:
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
