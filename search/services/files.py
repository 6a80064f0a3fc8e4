"""Files handed to the user: checked before any work, written atomically, never clobbered.

`check_destination` runs before the long work so that a bad path fails at once and writes
nothing. `write_new` writes to a temporary file in the same folder and moves it into place in
one step: a reader never sees half a file, and an interrupted export leaves no file behind.
Without `force` the move is a hard link, which fails if the name appeared meanwhile.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from hwnas.search.output import UserError


def check_destination(path: str | Path, force: bool, suffix: str | None = None) -> Path:
    """The absolute path to write, or a UserError saying why it cannot be written."""
    p = Path(path).expanduser().absolute()
    if suffix is not None and p.suffix != suffix:
        raise UserError(f"{path}: the output file must end in {suffix}")
    if not p.parent.is_dir():
        raise UserError(f"{path}: folder {p.parent} does not exist; create it or choose another")
    if p.is_dir():
        raise UserError(f"{path} is a folder; give a file name ending in {suffix or ''}")
    if p.exists() and not force:
        raise UserError(f"{path} already exists; pass {{field}} to overwrite it", field="force")
    _probe(p.parent, path)
    return p


def _probe(folder: Path, shown: str | Path) -> None:
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".hwnas-probe-")
    except OSError as e:
        raise UserError(f"{shown}: cannot write in {folder}: {e.strerror}") from None
    os.close(fd)
    os.unlink(name)


def write_new(path: Path, data: bytes, force: bool) -> None:
    """Write `data` to `path` atomically; without `force`, fail if `path` exists."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        if force:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise UserError(
                f"{path} appeared meanwhile; pass {{field}} to overwrite it", field="force"
            ) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
