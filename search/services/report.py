"""`hwnas report SEARCH --out DIR`: a Markdown report with PNG figures, from the database.

It gathers what the database knows about a search (its candidates and front, the targets'
measurements and predictors, the exports of its candidates) and, where `--bench DIR` holds
the JSON of `python -m bench`, the sampler comparison and the weight-sharing check. Every
number in it comes with the command that produced it.
"""

from __future__ import annotations

import json
import logging
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
from hwnas.db.models import AccuracyPredictor, Candidate, Export, Run
from hwnas.db.models import Predictor as PredictorRow
from hwnas.db.models import Target as TargetRow
from hwnas.db.session import Database, open_db
from hwnas.latency.predictor import Predictor
from hwnas.latency.targets import Target
from hwnas.search.output import UserError
from hwnas.search.services import rounds
from hwnas.search.services.prediction import load_target_data
from hwnas.search.services.search import find_search
from hwnas.supernet.space import SearchSpace
from hwnas.supernet.train_config import TrainConfig, to_toml
from sqlalchemy import select

logger = logging.getLogger(__name__)

PACKAGES = (
    "jax",
    "flax",
    "optax",
    "optuna",
    "sqlalchemy",
    "tensorflow-cpu",
    "ai-edge-litert",
    "numpy",
    "scikit-learn",
)
# what a report folder may already hold: the report, its figures, the run's space and config
OUTPUTS = ("report.md", ".png", "space.json", "train.toml")


@dataclass(frozen=True)
class TargetReport:
    """One latency target: its measured subnets, every predictor's predictions of them and
    held-out figures, and the machine that measured it."""

    key: str
    measured: np.ndarray
    predicted: dict[str, np.ndarray]
    holdout: dict[str, dict]
    fingerprint: dict


@dataclass(frozen=True)
class ReportData:
    search: dict
    run: dict
    candidates: list[dict]
    targets: dict[str, TargetReport]
    exports: list[dict]
    bench: dict = field(default_factory=dict)

    @property
    def latency_keys(self) -> list[str]:
        return [k for k in self.search["targets"] if k in self.targets]


# ---- gathering --------------------------------------------------------------------------------


def gather(db: Database, name: str, bench: dict) -> ReportData:
    with db.read() as s:
        row = find_search(s, name)
        run = s.get(Run, row.run_id)
        search = {
            c: getattr(row, c)
            for c in ("name", "targets", "objectives", "budgets", "sampler", "seed", "options")
        }
        search_id = row.id
        space_key = SearchSpace.from_dict(run.space).key
        run_info = {
            c: getattr(run, c)
            for c in (
                "name",
                "dataset",
                "data_dir",
                "loader",
                "space",
                "config",
                "seconds",
                "val_acc_largest",
                "val_acc_smallest",
            )
        }
        cands = [
            _candidate(c)
            for c in s.scalars(
                select(Candidate)
                .where(Candidate.search_id == row.id)
                .order_by(Candidate.trial_number)
            )
        ]
        ids = {c["candidate"] for c in cands}
        exports = [
            _export(e)
            for e in s.scalars(select(Export).order_by(Export.id))
            if e.candidate_id in ids
        ]
    if not cands:
        raise UserError(f"search {name!r} has no finished trial yet; run `hwnas search` first")
    search["rounds"] = rounds.history(db, search_id)
    search["accuracy_fit"] = _accuracy_fit(db, search["rounds"])
    keys = [k for k in search["targets"] if k in cands[0]["predicted_ms"]]
    targets = {k: t for k in keys if (t := target_report(db, k, space_key)) is not None}
    return ReportData(search, run_info, cands, targets, exports, bench)


def _accuracy_fit(db: Database, history: list[dict]) -> dict | None:
    """How the accuracy predictor of the search's first round was fitted (None: the supernet
    scored its trials): `hwnas accuracy fit`'s --n and --held-out."""
    pid = history[0].get("accuracy_predictor") if history else None
    if pid is None:
        return None
    with db.read() as s:
        row = s.get(AccuracyPredictor, pid)
        return {"n": row.n_train, "held_out": row.metrics.get("held_out", {}).get("n", 0)}


def _candidate(c: Candidate) -> dict:
    keep = (
        "id",
        "trial_number",
        "subnet_key",
        "subnet",
        "accuracy",
        "accuracy_supernet",
        "params",
        "macs",
        "predicted_ms",
        "measured_ms",
        "feasible",
        "pareto",
        "extrapolated",
        "round",
        "scored_round",
    )
    out = {k: getattr(c, k) for k in keep}
    out["candidate"] = out.pop("id")
    out["measured_ms"] = out["measured_ms"] or {}
    return out


def _export(e: Export) -> dict:
    keep = {"candidate": e.candidate_id, "precision": e.precision, "path": e.path}
    return e.proof | keep | {"bytes": e.bytes, "sha256": e.sha256}


def target_report(db: Database, key: str, space_key: str) -> TargetReport | None:
    """Measurements and predictors of one target on the search's space (None when it has no
    measurements of it here)."""
    try:
        data = load_target_data(db, Target.parse(key), space_key)
    except UserError:
        return None
    with db.read() as s:
        t = s.scalars(select(TargetRow).where(TargetRow.key == key)).one()
        rows = s.scalars(
            select(PredictorRow)
            .where(
                PredictorRow.target_id == t.id,
                PredictorRow.space_key == space_key,
                PredictorRow.name.is_(None),
            )
            .order_by(PredictorRow.id)
        ).all()
        newest = {r.kind: (r.model, r.metrics) for r in rows}  # later rows win
        fingerprint = dict(t.fingerprint)
    predicted = {}
    for kind, (model, _) in newest.items():
        p = Predictor.from_dict(model)
        if p.space.to_dict() == data.space.to_dict():
            predicted[kind] = p.predict(data.subnets)
    holdout = {kind: metrics for kind, (_, metrics) in newest.items()}
    return TargetReport(key, data.latency_ms, predicted, holdout, fingerprint)


def load_bench(folder: Path | None) -> dict:
    """The JSON files `python -m bench --out DIR` wrote, by bench name (never unpickled)."""
    if folder is None:
        return {}
    if not folder.is_dir():
        raise UserError(
            f"--bench {folder} is not a folder; give the --out folder of `python -m bench`"
        )
    out = {}
    for f in sorted(folder.glob("*.json")):
        try:
            out[f.stem] = json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            logger.info(f"report: {f} is not JSON; skipped")
    return out


def versions() -> dict:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


# ---- writing ----------------------------------------------------------------------------------


def check_out(out: Path) -> None:
    """DIR must be new, empty, or an earlier report (only report.md and PNGs in it)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for report.md and its figures")
    if out.is_dir():
        other = [p.name for p in out.iterdir() if not p.name.endswith(OUTPUTS)]
        if other:
            raise UserError(
                f"--out {out} holds other files ({', '.join(sorted(other)[:3])}); "
                "give a new or empty folder"
            )
    parent = out.resolve().parent
    if not parent.is_dir():
        raise UserError(f"--out {out}: folder {parent} does not exist")


def report(db_url: str | None, name: str, out: str | Path, bench_dir: str | Path | None) -> dict:
    from hwnas.search.report.figures import draw_all
    from hwnas.search.report.markdown import markdown

    out = Path(out)
    check_out(out)
    bench = load_bench(Path(bench_dir) if bench_dir else None)
    with open_db(db_url, create=False) as db:
        data = gather(db, name, bench)
    out.mkdir(exist_ok=True)
    (out / "space.json").write_text(json.dumps(data.run["space"], indent=1) + "\n")
    (out / "train.toml").write_text(to_toml(TrainConfig.from_dict(data.run["config"])))
    figures = draw_all(data, out)
    text = markdown(data, figures, versions(), db_url_shown(db_url), str(out))
    (out / "report.md").write_text(text)
    return {
        "report": str(out / "report.md"),
        "figures": sorted(figures.values()),
        "sections": [line[3:] for line in text.splitlines() if line.startswith("## ")],
    }


def db_url_shown(db_url: str | None) -> str:
    """The database URL without its password."""
    from hwnas.db.session import resolve_url
    from sqlalchemy.engine import make_url

    return make_url(resolve_url(db_url)).render_as_string(hide_password=True)
