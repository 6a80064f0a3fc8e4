"""Alembic's environment for hwnas's own tables (`hwnas.db.migrate` runs it).

hwnas keeps its revision in a version table of its own, `hwnas_alembic_version`: Optuna's
Alembic revisions of its own tables, in the same database, stay in `alembic_version`. Each
upgrade runs in the caller's transaction (one transaction on SQLite and PostgreSQL alike).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from hwnas.db.models import Base

VERSION_TABLE = "hwnas_alembic_version"


def run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


given = context.config.attributes.get("connection")
if given is not None:
    run(given)
else:  # the `alembic` command line, with sqlalchemy.url set
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set sqlalchemy.url to the hwnas database's URL")
    engine = create_engine(url)
    with engine.begin() as conn:
        run(conn)
    engine.dispose()
