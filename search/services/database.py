"""`hwnas db init` and `hwnas db status`."""

from __future__ import annotations

import dataclasses

from hwnas.db.queries import StoreStatus, status
from hwnas.db.session import open_db
from hwnas.search.result import Result


@dataclasses.dataclass(frozen=True)
class DbStatus(StoreStatus, Result):
    """The database's URL (password hidden), backend, schema version (found and expected) and
    the row count of every table, hwnas's (`tables`) and any other (`other_tables`)."""

    @classmethod
    def of(cls, found: StoreStatus) -> DbStatus:
        return cls(**{f.name: getattr(found, f.name) for f in dataclasses.fields(found)})


def db_init(url: str | None) -> DbStatus:
    """Create the hwnas tables where missing (idempotent) and record the schema version."""
    with open_db(url, create=True) as db:
        return DbStatus.of(status(db))


def db_status(url: str | None) -> DbStatus:
    """The status of an existing hwnas database (nothing is created)."""
    with open_db(url, create=False) as db:
        return DbStatus.of(status(db))
