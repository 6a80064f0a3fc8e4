"""Import latencies measured anywhere (`hwnas measure --import FILE --target NAME --space S`):
a measurement file (`hwnas.latency.measurement_file`) recorded as measurements of a target,
like the ones hwnas takes itself.

All or nothing: the whole file is checked before the database is opened, and the first bad
line is named. A measurement's identity is its content (target, space, subnet, latency,
spread), so importing the same file twice, or two files that share lines, adds each
measurement once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from hwnas.db.latency_store import NewMeasurement, add_measurement, stored_sources
from hwnas.db.queries import ensure_space, ensure_target
from hwnas.db.session import open_db
from hwnas.latency.measurement_file import (
    Imported,
    MeasurementFileError,
    check_foreign,
    read_measurements,
)
from hwnas.latency.targets import Target
from hwnas.search.output import UserError
from hwnas.search.result import Result
from hwnas.supernet.space import SearchSpace

WEIGHTS = "external"  # what the measured models carried: not known to hwnas


@dataclass(frozen=True)
class MeasurementImport(Result):
    """A measurement file imported: per target, the measurements added."""

    path: str
    space: str
    space_key: str
    targets: list[str]
    imported: int
    skipped: int
    target: str = ""  # the one target imported into, where the command named it


def source_of(m: Imported, space: SearchSpace) -> str:
    """The measurement's identity in the database (its content's digest)."""
    spread = "" if m.spread_ms is None else repr(m.spread_ms)
    text = "|".join((m.target.key, space.key, m.subnet.key, repr(m.latency_ms), spread))
    return "import:" + hashlib.sha256(text.encode()).hexdigest()[:48]


def _read(path: Path, space: SearchSpace, target: Target | None) -> list[Imported]:
    if not path.is_file():
        raise UserError(f"no such file {path}", field="import")
    try:
        rows = read_measurements(path, space, target)
    except MeasurementFileError as e:
        raise UserError(f"{e}; fix it and import again. Nothing was imported") from None
    if not rows:
        raise UserError(f"{path} holds no measurements; nothing was imported", field="import")
    return rows


def import_measurements(
    db_url: str | None, path: str | Path, space: SearchSpace, target: Target | None = None
) -> MeasurementImport:
    """Record every measurement of the file under its target (`target`, or the one each line
    names) and `space`; lines recorded before are skipped."""
    path = Path(path)
    if target is not None:
        try:
            check_foreign(target)
        except ValueError as e:
            raise UserError(f"{{field}}: {e}", field="target") from None
    rows = _read(path, space, target)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    fingerprint = {"source": "import", "file": path.name, "sha256": digest}
    sources = [source_of(m, space) for m in rows]
    added = 0
    with open_db(db_url) as db, db.write() as s:
        ensure_space(s, space.key, space.name, space.to_dict())
        have = stored_sources(s, sources)
        ids: dict[str, int] = {}
        for m, src in zip(rows, sources, strict=True):
            if src in have:
                continue
            have.add(src)
            key = m.target.key
            if key not in ids:
                settings = m.target.settings()
                ids[key] = ensure_target(s, key, m.target.kind, settings, fingerprint).id
            add_measurement(s, ids[key], _measurement(m, space, src, fingerprint))
            added += 1
    keys = sorted({m.target.key for m in rows})
    return MeasurementImport(str(path), space.name, space.key, keys, added, len(rows) - added,
                             target.key if target else "")  # fmt: skip


def _measurement(m: Imported, space: SearchSpace, src: str, fingerprint: dict) -> NewMeasurement:
    spread = m.spread_ms or 0.0
    return NewMeasurement(
        run_id=None,
        space_key=space.key,
        subnet_key=m.subnet.key,
        subnet=m.subnet.to_dict(),
        kind="subnet",
        weights=WEIGHTS,
        median_ms=m.latency_ms,
        cv=spread / m.latency_ms,  # the relative spread, as near to a CV as the file says
        iqr_ms=spread,
        n_reps=0,  # not known
        remeasured=False,
        fingerprint=fingerprint | {"line": m.line},
        source=src,
    )
