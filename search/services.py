"""Service functions behind the CLI and the dashboard: each runs one step and returns a dict.

The foundation steps (space, database) live here; later steps get files of their own.
"""

from __future__ import annotations

from pathlib import Path

from db.queries import status
from db.session import open_db
from supernet.space import SearchSpace


def space_summary(space_file: str | Path | None = None) -> dict:
    """Size of the space and its extreme subnets, with their analytic costs."""
    space = SearchSpace.from_file(space_file)
    largest, smallest = space.largest(), space.smallest()
    return {
        "space": space.name,
        "n_subnets": space.n_subnets,
        "encoding_size": space.encoding_size,
        "largest": largest.to_dict(),
        "smallest": smallest.to_dict(),
        "largest_cost": vars(space.cost(largest)),
        "smallest_cost": vars(space.cost(smallest)),
        "choices": {
            "depths": list(space.depths),
            "kernels": list(space.kernels),
            "expands": list(space.expands),
            "resolutions": list(space.resolutions),
            "widths": [s.width for s in space.stages],
        },
    }


def db_init(url: str | None) -> dict:
    db = open_db(url, create=True)
    try:
        return status(db)
    finally:
        db.dispose()


def db_status(url: str | None) -> dict:
    db = open_db(url, create=False)
    try:
        return status(db)
    finally:
        db.dispose()
