"""Schema migrations by Alembic: the revisions under `db/migrations/versions/` (`vN` brings a
database to hwnas schema version N) run in one transaction on SQLite and PostgreSQL alike,
keeping every row. hwnas's revision lives in `hwnas_alembic_version` (Optuna's own, in the same
database, in `alembic_version`); `hwnas_meta` keeps the schema version as a number, which is
what a database made before Alembic came records alone (such a one is stamped with its revision
first). Alembic is imported only when a database is created or upgraded."""

from __future__ import annotations

import sys
from pathlib import Path

from sqlalchemy import Connection, delete, insert, inspect, select

from hwnas.db.models import SCHEMA_VERSION, Meta

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "hwnas_alembic_version"  # as migrations/env.py configures it
OLDEST = 2  # the oldest schema version with a revision


def revision(version: int) -> str:
    return f"v{version}"


def can_migrate(found: str | None) -> bool:
    """Whether a database at schema `found` can be brought to this hwnas's schema."""
    try:
        version = int(found or "")
    except ValueError:
        return False
    return OLDEST <= version < SCHEMA_VERSION


def migrate(conn: Connection, found: str) -> None:
    """Bring the database from schema `found` to `SCHEMA_VERSION` (check `can_migrate`), in
    the write transaction of `conn` (where another process migrated it meanwhile: nothing)."""
    from alembic import command

    now = conn.scalar(select(Meta.value).where(Meta.key == "schema_version"))
    if now != found:
        return
    config = alembic_config(conn)
    if not inspect(conn).has_table(VERSION_TABLE):  # made before Alembic came
        command.stamp(config, revision(int(found)))
    command.upgrade(config, "head")
    _record_version(conn)
    print(
        f"hwnas: database migrated from schema version {found} to {SCHEMA_VERSION}",
        file=sys.stderr,
    )


def stamp_new(conn: Connection) -> None:
    """Record a database just made whole by `create_all` as at the newest revision."""
    from alembic import command

    command.stamp(alembic_config(conn), "head")
    _record_version(conn)


def alembic_config(conn: Connection):
    """Alembic's configuration for hwnas's revisions, running on `conn`."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def _record_version(conn: Connection) -> None:
    conn.execute(delete(Meta).where(Meta.key == "schema_version"))
    conn.execute(insert(Meta).values(key="schema_version", value=str(SCHEMA_VERSION)))


def script_module(rev: str):
    """The Python module of revision `rev` (for tests of its frozen helpers)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS)).get_revision(rev).module
