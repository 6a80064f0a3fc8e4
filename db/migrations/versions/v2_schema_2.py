"""Schema 2: the oldest hwnas database that can be upgraded (made by `create_all`, recorded as
version 2 in `hwnas_meta`; `hwnas.db.migrate` stamps such a database with this revision).

Revision ID: v2
Revises:
"""

from __future__ import annotations

revision = "v2"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass
