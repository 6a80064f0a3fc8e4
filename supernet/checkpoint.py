"""Checkpoints: msgpack (never pickle), content-hashed, written atomically.

File layout: the magic `HWNASCK1`, the 64-hex-digit sha256 of the payload, then the payload
(flax's msgpack serialisation of a state dict). A truncated or altered file fails the hash and
is refused; a kill at any moment leaves the previous checkpoint in place, because the new one is
written to a temporary file, fsynced and renamed over it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from flax import serialization

from hwnas.exceptions import HwnasError

MAGIC = b"HWNASCK1"


class CheckpointError(HwnasError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


def save(path: str | Path, tree: Any) -> tuple[str, int]:
    """Write `tree` to `path` atomically; returns (sha256 of the payload, file size)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = serialization.msgpack_serialize(serialization.to_state_dict(tree))
    digest = hashlib.sha256(payload).hexdigest()
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + digest.encode() + payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return digest, len(MAGIC) + 64 + len(payload)


def read_state_dict(path: str | Path) -> tuple[dict, str]:
    """Read and verify a checkpoint; returns (state dict, sha256)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e.strerror}") from None
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 64:
        raise CheckpointError(f"{path} is not an hwnas checkpoint (bad header)")
    digest = data[len(MAGIC) : len(MAGIC) + 64].decode(errors="replace")
    payload = data[len(MAGIC) + 64 :]
    if hashlib.sha256(payload).hexdigest() != digest:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated (content hash mismatch); "
            "delete it to start over or restore it from a copy"
        )
    try:
        return serialization.msgpack_restore(payload), digest
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} cannot be decoded: {e}") from None


def restore(path: str | Path, target: Any) -> tuple[Any, str]:
    """Restore a checkpoint into the structure of `target`; returns (tree, sha256)."""
    state, digest = read_state_dict(path)
    try:
        return serialization.from_state_dict(target, state), digest
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path} does not fit this model: {e}") from None


def file_sha256(path: str | Path) -> str:
    """The payload hash stored in a checkpoint's header (after verifying it)."""
    return read_state_dict(path)[1]


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
