"""Queries as plain functions of an open `Database`."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, inspect, select, table
from sqlalchemy.orm import Session

from hwnas.db.models import SCHEMA_VERSION, Base, Meta, Space, Target
from hwnas.db.session import Database


def schema_version(db: Database) -> int | None:
    with db.read() as s:
        value = s.scalar(select(Meta.value).where(Meta.key == "schema_version"))
    return int(value) if value is not None else None


def table_counts(db: Database) -> dict[str, int]:
    """Row count of every table in the database (hwnas's and any other, e.g. Optuna's)."""
    with db.engine.connect() as conn:
        names = sorted(inspect(conn).get_table_names())
        return {n: conn.scalar(select(func.count()).select_from(table(n))) or 0 for n in names}


@dataclass(frozen=True)
class StoreStatus:
    """A database's URL (password hidden), schema version and row counts."""

    url: str
    backend: str
    schema_version: int | None  # None: not an hwnas database yet
    expected_schema_version: int  # this hwnas's
    tables: dict[str, int]  # hwnas's tables
    other_tables: dict[str, int]  # any other (e.g. Optuna's)


def status(db: Database) -> StoreStatus:
    counts = table_counts(db)
    ours = {t.name for t in Base.metadata.sorted_tables}
    return StoreStatus(
        url=db.engine.url.render_as_string(hide_password=True),
        backend=db.engine.url.get_backend_name(),
        schema_version=schema_version(db),
        expected_schema_version=SCHEMA_VERSION,
        tables={n: c for n, c in counts.items() if n in ours},
        other_tables={n: c for n, c in counts.items() if n not in ours},
    )


def ensure_space(s: Session, key: str, name: str, data: dict) -> None:
    """Record a measured space under its key (once)."""
    if s.scalar(select(Space.id).where(Space.key == key)) is None:
        s.add(Space(key=key, name=name, space=data))
        s.flush()


def space_names(s: Session) -> dict[str, str]:
    """key -> name of every recorded space."""
    return dict(s.execute(select(Space.key, Space.name)).all())


def target_row(s: Session, key: str) -> Target | None:
    """The target `key` (e.g. tflite-fp32-t1), or None where nothing was measured on it."""
    return s.scalars(select(Target).where(Target.key == key)).one_or_none()


def target_keys(s: Session) -> list[str]:
    """Every measured target's key, oldest first."""
    return list(s.scalars(select(Target.key).order_by(Target.id)))


def ensure_target(s: Session, key: str, kind: str, settings: dict, fingerprint: dict) -> Target:
    """The target `key`, recorded (with its settings and the measuring machine) if new."""
    row = target_row(s, key)
    if row is None:
        row = Target(key=key, name=kind, settings=settings, fingerprint=fingerprint)
        s.add(row)
        s.flush()
    return row
