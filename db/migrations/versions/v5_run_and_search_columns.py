"""A run's checkpoint and loader leave its training config for columns of their own; a search's
further objectives (params, macs) leave its targets for `objectives`, and its options (margin,
initial trials, rounds) get a column (unknown for older searches: {}).

Revision ID: v5
Revises: v4
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "v5"
down_revision = "v4"
branch_labels = None
depends_on = None

EXTRAS = ("params", "macs")  # the objectives besides latency (search.objective.EXTRAS)


def upgrade() -> None:
    for column in (
        sa.Column("checkpoint", sa.Text, nullable=False, server_default=""),
        sa.Column("loader", sa.String(16), nullable=False, server_default="memory"),
    ):
        op.add_column("hwnas_runs", column)
    for name, default in (("objectives", "[]"), ("options", "{}")):
        op.add_column(
            "hwnas_searches", sa.Column(name, sa.JSON, nullable=False, server_default=default)
        )
    conn = op.get_bind()
    _split_run_configs(conn)
    _split_search_targets(conn)


def _split_run_configs(conn) -> None:
    runs = sa.table("hwnas_runs", sa.column("id"), sa.column("config", sa.JSON),
                    sa.column("checkpoint"), sa.column("loader"))  # fmt: skip
    for run_id, raw in conn.execute(sa.text("SELECT id, config FROM hwnas_runs")).all():
        config = json.loads(raw) if isinstance(raw, str) else dict(raw)
        ckpt, loader = config.pop("checkpoint", ""), config.pop("loader", "memory")
        conn.execute(
            sa.update(runs)
            .where(runs.c.id == run_id)
            .values(config=config, checkpoint=ckpt, loader=loader)
        )


def _split_search_targets(conn) -> None:
    searches = sa.table("hwnas_searches", sa.column("id"), sa.column("targets", sa.JSON),
                        sa.column("objectives", sa.JSON))  # fmt: skip
    for search_id, raw in conn.execute(sa.text("SELECT id, targets FROM hwnas_searches")).all():
        targets = json.loads(raw) if isinstance(raw, str) else list(raw)
        conn.execute(
            sa.update(searches)
            .where(searches.c.id == search_id)
            .values(
                targets=[t for t in targets if t not in EXTRAS],
                objectives=[t for t in targets if t in EXTRAS],
            )
        )
