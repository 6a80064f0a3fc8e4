"""Deterministic stratified train/validation/test splits, shared by every dataset loader
(`supernet/data.py` for arrays in memory, `supernet/folder.py` for image folders)."""

from __future__ import annotations

import numpy as np

from hwnas.exceptions import HwnasError


class DataError(HwnasError):
    """Bad or missing user data; the message says what is wrong and what to do (one line)."""


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    for label, value in (("validation", val_fraction), ("test", test_fraction)):
        if not 0.0 < value < 1.0:  # also rejects NaN
            raise DataError(f"{label} fraction must be between 0 and 1 (exclusive), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise DataError(
            f"validation + test fractions must sum to less than 1 so training data remains, "
            f"got {val_fraction} + {test_fraction}"
        )


def split_sizes(n: int, fractions: tuple[float, ...], what: str) -> list[int]:
    # At least one sample per held-out split, so a tiny dataset still gets every split.
    sizes = [max(1, int(np.floor(n * f + 0.5))) for f in fractions]
    if n - sum(sizes) < 1:
        raise DataError(
            f"{what} has only {n} samples, too few to split into train/validation/test; "
            f"add more data"
        )
    return sizes


def _stratified_order(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Order samples so that every prefix holds each class in proportion to its size.

    Each class is shuffled and its i-th sample gets the key (i + u) / n_class, u ~ U[0, 1);
    sorting by key interleaves the classes evenly (systematic stratified sampling), so cutting
    the order into consecutive pieces gives exact split sizes with per-class counts within one
    of the proportional share.
    """
    keys = np.empty(len(y), dtype=np.float64)
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        keys[members] = (np.arange(len(members)) + rng.random(len(members))) / len(members)
    return np.argsort(keys, kind="stable")


def stratified_parts(y: np.ndarray, seed: int, sizes: list[int]) -> list[np.ndarray]:
    """Index arrays for each of `sizes`, then one for the remaining samples, each sorted."""
    order = _stratified_order(y, np.random.default_rng(seed))
    return [np.sort(part) for part in np.split(order, np.cumsum(sizes))]
