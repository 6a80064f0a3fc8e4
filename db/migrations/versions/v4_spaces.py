"""Measurements and predictors by (space, target): every measurement takes its run's space key,
every predictor the key of its target's measurements where they are of one space (predictors of
a target measured on several spaces are left without one: refit them).

Revision ID: v4
Revises: v3
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "v4"
down_revision = "v3"
branch_labels = None
depends_on = None

# The space a run recorded, with the defaults of schema 4 filled in: the key of
# `SearchSpace.key` (supernet/space.py) as it was when schema 4 came, frozen here as a migration
# must be (tests/db/test_migrations.py checks the two agree).
SPACE_DEFAULTS = {
    "name": "mbv3-digits", "stages": [], "depths": [2, 3, 4], "kernels": [3, 5, 7],
    "expands": [3, 4, 6], "resolutions": [12, 14, 16], "stem_width": 16, "stem_stride": 1,
    "head_width": 128, "in_channels": 3, "num_classes": 10,
}  # fmt: skip
STAGE_DEFAULTS = {"stride": 1, "se": False, "act": "relu"}


def space_key(data: object) -> str | None:
    """A recorded space's key, None where the record is not a valid space's."""
    if not isinstance(data, dict) or set(data) - set(SPACE_DEFAULTS):
        return None
    dims = {**SPACE_DEFAULTS, **data}
    dims.pop("name")
    try:
        dims["stages"] = [{"width": s["width"], **STAGE_DEFAULTS, **s} for s in dims["stages"]]
        for name in ("depths", "kernels", "expands", "resolutions"):
            dims[name] = sorted(int(v) for v in dims[name])
    except (TypeError, KeyError, ValueError):
        return None
    if not dims["stages"]:
        return None
    text_ = json.dumps(dims, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text_.encode()).hexdigest()[:16]


def upgrade() -> None:
    op.add_column("hwnas_measurements", sa.Column("space_key", sa.String(16)))
    op.add_column(
        "hwnas_measurements",
        sa.Column("weights", sa.String(16), nullable=False, server_default="trained"),
    )
    op.add_column("hwnas_predictors", sa.Column("space_key", sa.String(16)))
    for name in ("measurements", "predictors"):
        op.create_index(f"ix_hwnas_{name}_space_key", f"hwnas_{name}", ["space_key"])
    spaces = op.create_table(
        "hwnas_spaces",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(16), nullable=False, unique=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("space", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    _key_measurements_and_predictors(op.get_bind(), spaces)


def _key_measurements_and_predictors(conn, spaces: sa.Table) -> None:
    found: dict[str, dict] = {}
    for run_id, raw in conn.execute(sa.text("SELECT id, space FROM hwnas_runs")).all():
        data = json.loads(raw) if isinstance(raw, str) else raw
        key = space_key(data)
        if key is None:
            continue
        found.setdefault(key, data)
        conn.execute(
            sa.text("UPDATE hwnas_measurements SET space_key = :k WHERE run_id = :r"),
            {"k": key, "r": run_id},
        )
    now = datetime.now(UTC).replace(tzinfo=None)
    for key, data in found.items():
        name = str(data.get("name", key))
        conn.execute(spaces.insert().values(key=key, name=name, space=data, created_at=now))
    rows = conn.execute(sa.text(
        "SELECT target_id, MIN(space_key), COUNT(DISTINCT space_key) FROM hwnas_measurements "
        "WHERE space_key IS NOT NULL GROUP BY target_id"
    )).all()  # fmt: skip
    for target_id, key, n in rows:
        if n == 1:
            conn.execute(
                sa.text("UPDATE hwnas_predictors SET space_key = :k WHERE target_id = :t"),
                {"k": key, "t": target_id},
            )
