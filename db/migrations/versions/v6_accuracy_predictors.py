"""Accuracy predictors: a candidate's supernet accuracy beside the one that drove its search
(older searches were all driven by the supernet), a round's accuracy predictor, the accuracy
samples and predictors tables.

Revision ID: v6
Revises: v5
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v6"
down_revision = "v5"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("hwnas_candidates", sa.Column("accuracy_supernet", sa.Double))
    op.execute("UPDATE hwnas_candidates SET accuracy_supernet = accuracy")
    op.add_column("hwnas_search_rounds", sa.Column("accuracy_predictor", sa.Integer))
    op.create_table(
        "hwnas_accuracy_samples",
        sa.Column("id", sa.Integer, primary_key=True),
        _run_id(),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("subnet_key", sa.String(400), nullable=False),
        sa.Column("subnet", sa.JSON, nullable=False),
        sa.Column("accuracy", sa.Double, nullable=False),
        sa.Column("halves", sa.JSON, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("run_id", "step", "subnet_key"),
    )
    op.create_table(
        "hwnas_accuracy_predictors",
        sa.Column("id", sa.Integer, primary_key=True),
        _run_id(),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("space_key", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(240)),
        sa.Column("n_train", sa.Integer, nullable=False),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("model", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )


def _run_id() -> sa.Column:
    return sa.Column(
        "run_id", sa.Integer, sa.ForeignKey("hwnas_runs.id", ondelete="CASCADE"), nullable=False
    )
