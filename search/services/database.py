"""`hwnas db init` and `hwnas db status`."""

from __future__ import annotations

from hwnas.db.queries import status
from hwnas.db.session import open_db


def db_init(url: str | None) -> dict:
    with open_db(url, create=True) as db:
        return status(db)


def db_status(url: str | None) -> dict:
    with open_db(url, create=False) as db:
        return status(db)
