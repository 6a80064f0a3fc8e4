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
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from hwnas.db import view_store
from hwnas.db.models import Candidate, Export
from hwnas.db.queries import target_row
from hwnas.db.session import Database, open_db, resolve_url
from hwnas.extras import require
from hwnas.latency.predictor import Predictor
from hwnas.latency.targets import Target
from hwnas.search.output import UserError
from hwnas.search.report.report_data import Record, ReportData, TargetReport
from hwnas.search.result import Result, jsonable
from hwnas.search.services import rounds
from hwnas.search.services.prediction import load_target_data
from hwnas.search.services.search import find_search
from hwnas.supernet.space import SearchSpace
from hwnas.supernet.train_config import TrainConfig, to_toml

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


RUN_COLUMNS = ("name", "dataset", "data_dir", "loader", "space", "config", "seconds",
               "val_acc_largest", "val_acc_smallest")  # fmt: skip
SEARCH_COLUMNS = ("name", "targets", "objectives", "budgets", "sampler", "seed", "options")
CANDIDATE_COLUMNS = ("id", "trial_number", "subnet_key", "subnet", "accuracy",
                     "accuracy_supernet", "params", "macs", "predicted_ms", "measured_ms",
                     "feasible", "pareto", "extrapolated", "round", "scored_round")  # fmt: skip


@dataclass(frozen=True)
class ReportResult(Result):
    """`hwnas report`'s result: the report file, its figures' file names and its sections."""

    report: str
    figures: tuple[str, ...]
    sections: tuple[str, ...]


# ---- gathering --------------------------------------------------------------------------------


def gather(db: Database, name: str, bench: Record) -> ReportData:
    with db.read() as s:
        row = find_search(s, name)
        run = view_store.search_run(s, row)
        search = {c: getattr(row, c) for c in SEARCH_COLUMNS}
        run_info = {c: getattr(run, c) for c in RUN_COLUMNS}
        cands = [_candidate(c) for c in view_store.search_candidates(s, row.id)]
        ids = {c["candidate"] for c in cands}
        exports = [_export(e) for e in view_store.exports_of(s) if e.candidate_id in ids]
    if not cands:
        raise UserError(f"search {name!r} has no finished trial yet; run `hwnas search` first")
    space_key = SearchSpace.from_dict(run_info["space"]).key
    search["rounds"] = [jsonable(r) for r in rounds.history(db, row.id)]
    search["accuracy_fit"] = _accuracy_fit(db, search["rounds"])
    keys = [k for k in search["targets"] if k in cands[0]["predicted_ms"]]
    targets = {k: t for k in keys if (t := target_report(db, k, space_key)) is not None}
    return ReportData(search, run_info, cands, targets, exports, bench)


def _accuracy_fit(db: Database, history: list[Record]) -> dict[str, int] | None:
    """How the accuracy predictor of the search's first round was fitted (None: the supernet
    scored its trials): `hwnas accuracy fit`'s --n and --held-out."""
    pid = history[0].get("accuracy_predictor") if history else None
    row = None if pid is None else view_store.accuracy_predictor(db, pid)
    if row is None:
        return None
    return {"n": row.n_train, "held_out": row.metrics.get("held_out", {}).get("n", 0)}


def _candidate(c: Candidate) -> Record:
    out = {k: getattr(c, k) for k in CANDIDATE_COLUMNS}
    out["candidate"] = out.pop("id")
    out["measured_ms"] = out["measured_ms"] or {}
    return out


def _export(e: Export) -> Record:
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
        t = target_row(s, key)
        fingerprint = dict(t.fingerprint) if t is not None else {}
        rows = view_store.own_predictors(s, key, space_key)
        newest = {r.kind: (r.model, r.metrics) for r in rows}  # later rows win
    predicted = {}
    for kind, (model, _) in newest.items():
        p = Predictor.from_dict(model)
        if p.space.to_dict() == data.space.to_dict():
            predicted[kind] = p.predict(data.subnets)
    holdout = {kind: metrics for kind, (_, metrics) in newest.items()}
    return TargetReport(key, data.latency_ms, predicted, holdout, fingerprint)


def load_bench(folder: Path | None) -> Record:
    """The JSON files `python -m bench --out DIR` wrote, by bench name (never unpickled)."""
    if folder is None:
        return {}
    if not folder.is_dir():
        raise UserError(
            f"{{field}} {folder} is not a folder; give the --out folder of `python -m bench`",
            field="bench",
        )
    out = {}
    for f in sorted(folder.glob("*.json")):
        try:
            out[f.stem] = json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            logger.info(f"report: {f} is not JSON; skipped")
    return out


def versions() -> dict[str, str]:
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
        raise UserError(
            f"{{field}} {out} is a file; give a folder for report.md and its figures", field="out"
        )
    if out.is_dir():
        other = [p.name for p in out.iterdir() if not p.name.endswith(OUTPUTS)]
        if other:
            raise UserError(
                f"{{field}} {out} holds other files ({', '.join(sorted(other)[:3])}); "
                "give a new or empty folder",
                field="out",
            )
    parent = out.resolve().parent
    if not parent.is_dir():
        raise UserError(f"{{field}} {out}: folder {parent} does not exist", field="out")


def report(
    db_url: str | None, name: str, out: str | Path, bench: str | Path | None = None
) -> ReportResult:
    """Write the report on search `name` into folder `out` (with the bench's JSON in folder
    `bench`, if given)."""
    require("report", "hwnas report (its figures)")
    from hwnas.search.report.figures import draw_all
    from hwnas.search.report.markdown import markdown

    out = Path(out)
    check_out(out)
    bench_json = load_bench(Path(bench) if bench else None)
    with open_db(db_url, create=False) as db:
        data = gather(db, name, bench_json)
    out.mkdir(exist_ok=True)
    (out / "space.json").write_text(json.dumps(data.run["space"], indent=1) + "\n")
    (out / "train.toml").write_text(to_toml(TrainConfig.from_dict(data.run["config"])))
    figures = draw_all(data, out)
    text = markdown(data, figures, versions(), db_url_shown(db_url), str(out))
    (out / "report.md").write_text(text)
    return ReportResult(
        report=str(out / "report.md"),
        figures=tuple(sorted(figures.values())),
        sections=tuple(line[3:] for line in text.splitlines() if line.startswith("## ")),
    )


def db_url_shown(db_url: str | None) -> str:
    """The database URL without its password."""
    return view_store.shown_url(resolve_url(db_url))
