"""Accuracy rounds: a round's front re-scored with the supernet (older rounds: unknown).

Revision ID: v7
Revises: v6
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "v7"
down_revision = "v6"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("hwnas_search_rounds", sa.Column("accuracy_front", sa.JSON))
