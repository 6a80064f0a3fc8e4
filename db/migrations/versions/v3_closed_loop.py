"""Closed-loop search: named predictors, per-round records, candidates' round and flags.

Revision ID: v3
Revises: v2
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v3"
down_revision = "v2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("hwnas_predictors", sa.Column("name", sa.String(240)))
    for column in (
        sa.Column("extrapolated", sa.JSON, nullable=False, server_default="[]"),
        sa.Column("round", sa.Integer, nullable=False, server_default="0"),
        sa.Column("scored_round", sa.Integer, nullable=False, server_default="0"),
    ):
        op.add_column("hwnas_candidates", column)
    op.create_table(
        "hwnas_search_rounds",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "search_id",
            sa.Integer,
            sa.ForeignKey("hwnas_searches.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("round", sa.Integer, nullable=False),
        sa.Column("study_name", sa.String(240), nullable=False),
        sa.Column("predictors", sa.JSON, nullable=False),
        sa.Column("trials", sa.Integer, nullable=False),
        sa.Column("agreement", sa.JSON),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        sa.UniqueConstraint("search_id", "round"),
    )
