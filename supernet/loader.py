"""Streaming an image folder with grain: training batches, evaluation batches, resumable.

Memory does not grow with the number of images: the training process holds the file index
(paths and labels) and a few batches in flight, while `workers` background processes decode,
crop, flip and resize (grain's `mp_prefetch`). Everything is a pure function of indices:

- epoch `e`'s order is the in-memory path's (`train.epoch_batches`: a permutation seeded by
  `(seed, 10000 + e)`), each step's images come from its global batch, and process `p` of `P`
  reads rows `p*B/P ... (p+1)*B/P - 1` of it (its shard);
- a step's images are decoded at the resolution the step trains at (`train.step_resolution`),
  with a crop and flip drawn from `(seed, epoch, position)`: whatever worker decodes them;
- an unreadable image is replaced by the next readable training image of the folder (so every
  batch keeps its size and order), logged once with its path and counted (`bad` in a batch).

So the number of steps run is all that a checkpoint needs to resume an epoch exactly where it
stopped: the iterator starts at that batch, whatever the number of workers.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import grain
import numpy as np

from hwnas.supernet.data import DataError
from hwnas.supernet.folder import FolderIndex, decode
from hwnas.supernet.order import epoch_order, step_resolution

PREFETCH_BATCHES = 2  # per worker: a 224-px batch of 32 is 4.8 MB


def default_workers() -> int:
    """Decoding processes: all cores but one (the training step uses them too), 1 to 8."""
    return max(1, min(8, (os.cpu_count() or 2) - 1))


@dataclass(frozen=True)
class Shard:
    """This process's part of every global batch."""

    index: int = 0
    count: int = 1

    def rows(self, batch: int) -> slice:
        local = batch // self.count
        return slice(self.index * local, (self.index + 1) * local)


class _Records:
    """Random access to the records of one shard over every epoch of a run: position ->
    (file index, global step, position in the epoch's order). Epochs follow each other, so
    the iterator's position is the number of steps run."""

    def __init__(self, index: FolderIndex, seed: int, epochs: int, batch: int, shard: Shard):
        self.train, self.seed, self.epochs = index.train, seed, epochs
        self.batch, self.rows = batch, shard.rows(batch)
        self.local = self.rows.stop - self.rows.start
        self.steps = len(self.train) // batch  # per epoch

    def __len__(self) -> int:
        return self.epochs * self.steps * self.local

    def __getitem__(self, i: int) -> tuple[int, int, int]:
        step, k = divmod(int(i), self.local)
        epoch, s = divmod(step, self.steps)
        order = epoch_order(len(self.train), self.seed, epoch)
        pos = s * self.batch + self.rows.start + k
        return int(self.train[order[pos]]), step, epoch * len(self.train) + pos


@dataclass(frozen=True)
class _DecodeTrain:
    index: FolderIndex
    resolutions: tuple[int, ...]
    seed: int

    def __call__(self, record: tuple[int, int, int]) -> dict:
        i, step, pos = record
        size = step_resolution(self.resolutions, self.seed, step)
        rng = np.random.default_rng((self.seed, 30_000, pos))
        j, image, bad = _readable(self.index, i, size, rng)
        return {"image": image, "label": self.index.labels[j], "bad": bad}


def _readable(index: FolderIndex, i: int, size: int, rng) -> tuple[int, np.ndarray, str]:
    """(file index, image) of image `i`, or of the next readable training image (with its
    own label: it may be of the next class); the unreadable path, or ''."""
    bad = ""
    train = index.train
    at = int(np.searchsorted(train, i))
    for k in range(len(train)):
        j = int(train[(at + k) % len(train)]) if k else i
        try:
            return j, decode(index.path(j), size, rng), bad
        except DataError:
            bad = bad or str(index.path(j))
    raise DataError(f"no training image in {index.root} can be read; check the folder")


@dataclass(frozen=True)
class _DecodePlain:
    index: FolderIndex
    size: int

    def __call__(self, i: int) -> dict:
        try:
            image, ok = decode(self.index.path(int(i)), self.size), True
        except DataError:
            image, ok = np.zeros((self.size, self.size, 3), np.uint8), False
        path = "" if ok else str(self.index.path(int(i)))
        return {"image": image, "label": self.index.labels[int(i)], "bad": path}


def _iterate(ds: grain.MapDataset, workers: int, processes: bool) -> grain.DatasetIterator:
    """Iterate `ds` with `workers` background processes (`processes`: training, spawned once
    a run) or threads (evaluation: PIL decodes without the GIL, and no process start-up)."""
    threads = 1 if processes else max(workers, 1)
    read = grain.ReadOptions(num_threads=threads, prefetch_buffer_size=PREFETCH_BATCHES * threads)
    it = ds.to_iter_dataset(read)
    if processes and workers > 0:
        _absl_defaults()
        _quiet_tracker()
        opts = grain.MultiprocessingOptions(workers, per_worker_buffer_size=PREFETCH_BATCHES)
        it = it.mp_prefetch(opts, worker_init_fn=_die_with_parent)
    return iter(it)


def _die_with_parent(_index: int, _count: int) -> None:
    """A worker ends with the training process, even after its `kill -9` (Linux)."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _quiet_tracker() -> None:
    """The workers hand batches over in shared memory; those still buffered when a run ends
    are unlinked at exit by multiprocessing's resource tracker, which then warns of "leaked
    shared_memory objects" although nothing is left behind. The tracker takes its warning
    filters from `sys.warnoptions` when it starts (with the first worker)."""
    quiet = "ignore:resource_tracker:UserWarning"
    if quiet not in sys.warnoptions:
        sys.warnoptions.append(quiet)


def _absl_defaults() -> None:
    """grain's worker processes read absl flags, which only an absl `app.run` would parse:
    take their defaults."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def train_batches(
    index: FolderIndex,
    resolutions: tuple[int, ...],
    seed: int,
    epochs: int,
    batch: int,
    shard: Shard = Shard(),
    workers: int = 0,
    start: int = 0,
) -> grain.DatasetIterator:
    """The iterator of a run's batches (every epoch) for `shard` from global step `start`:
    dicts of `image` (uint8, at each step's resolution), `label` and `bad` (unreadable paths
    replaced in the batch). Batch `k` is the same whatever `start` and `workers` are, so the
    step is all a checkpoint needs to resume (grain's own iterator state would tie it to the
    number of workers)."""
    records = _Records(index, seed, epochs, batch, shard)
    decoder = _DecodeTrain(index, tuple(resolutions), seed)
    ds = grain.MapDataset.source(records).map(decoder).batch(records.local, drop_remainder=True)
    return _iterate(ds[start:], workers, processes=True)


def plain_batches(
    index: FolderIndex, ids: np.ndarray, size: int, batch: int, workers: int = 0
) -> Iterator[dict]:
    """Images `ids` in order, resized to `size`, in batches of `batch` (the last one short)."""
    ds = grain.MapDataset.source(np.asarray(ids)).map(_DecodePlain(index, size)).batch(batch)
    return _iterate(ds, workers, processes=False)


def decode_all(
    index: FolderIndex, ids: np.ndarray, size: int, workers: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (n, size, size, 3), their file indices): the images `ids` decoded by the
    background workers, the unreadable ones left out (and named on stderr)."""
    out = np.zeros((len(ids), size, size, 3), np.uint8)
    kept = np.zeros(len(ids), bool)
    at = 0
    for b in plain_batches(index, ids, size, 64, workers):
        n = len(b["image"])
        ok = np.asarray([not p for p in b["bad"]])
        out[at : at + n], kept[at : at + n] = b["image"], ok
        for p in b["bad"]:
            if p:
                print(f"skipping unreadable image {p}", file=sys.stderr)
        at += n
    return out[kept], np.asarray(ids)[kept]
