"""Schema migrations: each step adds to an older hwnas database what a newer schema needs,
keeping every row. A step runs in one transaction on SQLite and PostgreSQL alike."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable

from sqlalchemy import JSON, Connection, column, inspect, table, text, update

from hwnas.db.models import SCHEMA_VERSION, Base, Meta, Space, utcnow


def _v2_to_v3(conn: Connection) -> None:
    """Closed-loop search: named predictors, per-round records, candidates' round and flags."""
    conn.execute(text("ALTER TABLE hwnas_predictors ADD COLUMN name VARCHAR(240)"))
    for added in (
        "extrapolated JSON NOT NULL DEFAULT '[]'",
        "round INTEGER NOT NULL DEFAULT 0",
        "scored_round INTEGER NOT NULL DEFAULT 0",
    ):
        conn.execute(text(f"ALTER TABLE hwnas_candidates ADD COLUMN {added}"))


# The space a run recorded, with the defaults of schema 4 filled in: the key of
# `SearchSpace.key` (supernet/space.py) as it was when schema 4 came, frozen here as a migration
# must be (the db package imports nothing of ours; tests/db/test_session.py checks the two agree).
_SPACE_DEFAULTS_V4 = {
    "name": "mbv3-digits", "stages": [], "depths": [2, 3, 4], "kernels": [3, 5, 7],
    "expands": [3, 4, 6], "resolutions": [12, 14, 16], "stem_width": 16, "stem_stride": 1,
    "head_width": 128, "in_channels": 3, "num_classes": 10,
}  # fmt: skip
_STAGE_DEFAULTS_V4 = {"stride": 1, "se": False, "act": "relu"}


def _space_key_v4(data: object) -> str | None:
    """A recorded space's key, None where the record is not a valid space's."""
    if not isinstance(data, dict) or set(data) - set(_SPACE_DEFAULTS_V4):
        return None
    dims = {**_SPACE_DEFAULTS_V4, **data}
    dims.pop("name")
    try:
        dims["stages"] = [{"width": s["width"], **_STAGE_DEFAULTS_V4, **s} for s in dims["stages"]]
        for name in ("depths", "kernels", "expands", "resolutions"):
            dims[name] = sorted(int(v) for v in dims[name])
    except (TypeError, KeyError, ValueError):
        return None
    if not dims["stages"]:
        return None
    text_ = json.dumps(dims, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text_.encode()).hexdigest()[:16]


def _v3_to_v4(conn: Connection) -> None:
    """Measurements and predictors by (space, target): every measurement takes its run's space
    key, every predictor the key of its target's measurements where they are of one space
    (predictors of a target measured on several spaces are left without one: refit them)."""
    conn.execute(text("ALTER TABLE hwnas_measurements ADD COLUMN space_key VARCHAR(16)"))
    conn.execute(text(
        "ALTER TABLE hwnas_measurements ADD COLUMN weights VARCHAR(16) NOT NULL DEFAULT 'trained'"
    ))  # fmt: skip
    conn.execute(text("ALTER TABLE hwnas_predictors ADD COLUMN space_key VARCHAR(16)"))
    for name in ("measurements", "predictors"):
        conn.execute(text(
            f"CREATE INDEX ix_hwnas_{name}_space_key ON hwnas_{name} (space_key)"
        ))  # fmt: skip
    Space.__table__.create(conn)  # type: ignore[attr-defined]  # a Table, typed FromClause
    spaces: dict[str, dict] = {}
    for run_id, raw in conn.execute(text("SELECT id, space FROM hwnas_runs")).all():
        data = json.loads(raw) if isinstance(raw, str) else raw
        key = _space_key_v4(data)
        if key is None:
            continue
        spaces.setdefault(key, data)
        conn.execute(
            text("UPDATE hwnas_measurements SET space_key = :k WHERE run_id = :r"),
            {"k": key, "r": run_id},
        )
    for key, data in spaces.items():
        conn.execute(Space.__table__.insert().values(  # type: ignore[attr-defined]
            key=key, name=str(data.get("name", key)), space=data, created_at=utcnow()
        ))  # fmt: skip
    rows = conn.execute(text(
        "SELECT target_id, MIN(space_key), COUNT(DISTINCT space_key) FROM hwnas_measurements "
        "WHERE space_key IS NOT NULL GROUP BY target_id"
    )).all()  # fmt: skip
    for target_id, key, n in rows:
        if n == 1:
            conn.execute(
                text("UPDATE hwnas_predictors SET space_key = :k WHERE target_id = :t"),
                {"k": key, "t": target_id},
            )


def _v4_to_v5(conn: Connection) -> None:
    """A run's checkpoint and loader leave its training config for columns of their own; a
    search's further objectives (params, macs) leave its targets for `objectives`, and its
    options (margin, initial trials, rounds) get a column (unknown for older searches: {})."""
    conn.execute(text("ALTER TABLE hwnas_runs ADD COLUMN checkpoint TEXT NOT NULL DEFAULT ''"))
    conn.execute(text(
        "ALTER TABLE hwnas_runs ADD COLUMN loader VARCHAR(16) NOT NULL DEFAULT 'memory'"
    ))  # fmt: skip
    runs = table("hwnas_runs", column("id"), column("config", JSON), column("checkpoint"),
                 column("loader"))  # fmt: skip
    for run_id, raw in conn.execute(text("SELECT id, config FROM hwnas_runs")).all():
        config = json.loads(raw) if isinstance(raw, str) else dict(raw)
        ckpt, loader = config.pop("checkpoint", ""), config.pop("loader", "memory")
        conn.execute(
            update(runs)
            .where(runs.c.id == run_id)
            .values(config=config, checkpoint=ckpt, loader=loader)
        )
    for added in ("objectives JSON NOT NULL DEFAULT '[]'", "options JSON NOT NULL DEFAULT '{}'"):
        conn.execute(text(f"ALTER TABLE hwnas_searches ADD COLUMN {added}"))
    searches = table("hwnas_searches", column("id"), column("targets", JSON),
                     column("objectives", JSON))  # fmt: skip
    for search_id, raw in conn.execute(text("SELECT id, targets FROM hwnas_searches")).all():
        targets = json.loads(raw) if isinstance(raw, str) else list(raw)
        conn.execute(
            update(searches)
            .where(searches.c.id == search_id)
            .values(
                targets=[t for t in targets if t not in EXTRAS],
                objectives=[t for t in targets if t in EXTRAS],
            )
        )


def _v5_to_v6(conn: Connection) -> None:
    """Accuracy predictors: a candidate's supernet accuracy beside the one that drove its
    search (older searches were all driven by the supernet), a round's accuracy predictor;
    the samples and predictors tables are created afterwards."""
    conn.execute(text("ALTER TABLE hwnas_candidates ADD COLUMN accuracy_supernet FLOAT"))
    conn.execute(text("UPDATE hwnas_candidates SET accuracy_supernet = accuracy"))
    if inspect(conn).has_table("hwnas_search_rounds"):  # else made whole by create_all (v2)
        conn.execute(text("ALTER TABLE hwnas_search_rounds ADD COLUMN accuracy_predictor INTEGER"))


def _v6_to_v7(conn: Connection) -> None:
    """Accuracy rounds: a round's front re-scored with the supernet (older rounds: unknown)."""
    if inspect(conn).has_table("hwnas_search_rounds"):  # else made whole by create_all (v2)
        conn.execute(text("ALTER TABLE hwnas_search_rounds ADD COLUMN accuracy_front JSON"))


EXTRAS = ("params", "macs")  # the objectives besides latency (search.objective.EXTRAS)
STEPS: dict[int, Callable[[Connection], None]] = {
    2: _v2_to_v3,
    3: _v3_to_v4,
    4: _v4_to_v5,
    5: _v5_to_v6,
    6: _v6_to_v7,
}


def can_migrate(found: str | None) -> bool:
    """Whether a database at schema `found` can be brought to this hwnas's schema."""
    try:
        version = int(found or "")
    except ValueError:
        return False
    return version < SCHEMA_VERSION and all(v in STEPS for v in range(version, SCHEMA_VERSION))


def migrate(engine, found: str) -> None:
    """Bring the database from schema `found` to `SCHEMA_VERSION` (check `can_migrate`)."""
    with engine.begin() as conn:
        for version in range(int(found), SCHEMA_VERSION):
            STEPS[version](conn)
        Base.metadata.create_all(conn)
        conn.execute(
            Meta.__table__.update()  # type: ignore[attr-defined]  # a Table, typed FromClause
            .where(Meta.key == "schema_version")
            .values(value=str(SCHEMA_VERSION))
        )
    print(
        f"hwnas: database migrated from schema version {found} to {SCHEMA_VERSION}",
        file=sys.stderr,
    )
