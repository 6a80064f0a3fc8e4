"""Schema migrations: each step adds to an older hwnas database what a newer schema needs,
keeping every row. A step runs in one transaction on SQLite and PostgreSQL alike."""

from __future__ import annotations

import sys
from collections.abc import Callable

from sqlalchemy import Connection, text

from db.models import SCHEMA_VERSION, Base, Meta


def _v2_to_v3(conn: Connection) -> None:
    """Closed-loop search: named predictors, per-round records, candidates' round and flags."""
    conn.execute(text("ALTER TABLE hwnas_predictors ADD COLUMN name VARCHAR(240)"))
    for column in (
        "extrapolated JSON NOT NULL DEFAULT '[]'",
        "round INTEGER NOT NULL DEFAULT 0",
        "scored_round INTEGER NOT NULL DEFAULT 0",
    ):
        conn.execute(text(f"ALTER TABLE hwnas_candidates ADD COLUMN {column}"))


STEPS: dict[int, Callable[[Connection], None]] = {2: _v2_to_v3}


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
            Meta.__table__.update()
            .where(Meta.key == "schema_version")
            .values(value=str(SCHEMA_VERSION))
        )
    print(
        f"hwnas: database migrated from schema version {found} to {SCHEMA_VERSION}",
        file=sys.stderr,
    )
