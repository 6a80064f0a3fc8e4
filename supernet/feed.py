"""What the training loop reads: batches of a run, BN-recalibration batches, validation.

Two feeds behind one interface. `MemoryFeed` holds a decoded `Dataset` (digits, CIFAR-10,
npz, small folders: fastest where it fits). `StreamFeed` reads an image folder through grain
(`hwnas.supernet.loader`): memory independent of the number of images, decoding and augmentation
in background processes. Both give process `p` of `P` its rows of every global batch, in the
order `hwnas.supernet.order` fixes, so the same run trains on the same images whichever feeds it.
A feed's batches start at any global step: a checkpoint keeps the step (and the feed's
fingerprint, so that a run resumes on the data it started on).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from hwnas.supernet.data import Dataset
from hwnas.supernet.evaluate import eval_batch, resized_calibration
from hwnas.supernet.folder import FolderIndex
from hwnas.supernet.loader import Shard, decode_all, plain_batches, train_batches
from hwnas.supernet.train_config import TrainConfig
from hwnas.supernet.train_step import epoch_batches, normalise, resize_images

CALIBRATION_POOL = 1024  # training images a streamed folder keeps for BN recalibration


@dataclass(frozen=True)
class Batch:
    x: np.ndarray  # uint8 (local batch, R, R, 3)
    y: np.ndarray  # int32 (local batch,)
    bad: tuple[str, ...] = ()  # unreadable images replaced in this batch


class MemoryBatches:
    """A run's batches from arrays in memory, from global step `start`."""

    def __init__(self, data: Dataset, config: TrainConfig, shard: Shard, start: int) -> None:
        self.data, self.config, self.rows = data, config, shard.rows(config.batch_size)
        self.steps = len(data.y_train) // config.batch_size
        self.next_step = start
        self._batches: tuple[int, list[np.ndarray]] = (-1, [])

    def __iter__(self) -> MemoryBatches:
        return self

    def __next__(self) -> Batch:
        if self.next_step >= self.config.epochs * self.steps:
            raise StopIteration
        epoch, s = divmod(self.next_step, self.steps)
        idx = self._epoch(epoch)[s][self.rows]
        self.next_step += 1
        return Batch(self.data.x_train[idx], self.data.y_train[idx])

    def _epoch(self, epoch: int) -> list[np.ndarray]:
        """The epoch's index batches, made once an epoch."""
        if self._batches[0] != epoch:
            self._batches = (epoch, epoch_batches(len(self.data.y_train), self.config, epoch))
        return self._batches[1]

    def close(self) -> None:
        pass


@dataclass
class MemoryFeed:
    data: Dataset
    kind: str = "memory"

    @property
    def n_train(self) -> int:
        return len(self.data.y_train)

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    def summary(self) -> dict:
        return self.data.summary() | {"loader": self.kind}

    def batches(self, space, config: TrainConfig, shard: Shard, start: int) -> MemoryBatches:
        return MemoryBatches(self.data, config, shard, start)

    def fingerprint(self) -> str:
        """What a checkpoint's data must match: the training images' count and labels."""
        y = self.data.y_train
        return f"{self.data.name}:{len(y)}:{hashlib.sha256(y.tobytes()).hexdigest()[:16]}"

    def calibration(self, resolution: int, config: TrainConfig) -> list[np.ndarray]:
        return resized_calibration(self.data.x_train, resolution, config)

    def validation(self, resolution: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        yield resize_images(self.data.x_val, resolution), self.data.y_val


class _Converted:
    """grain's batch dicts as `Batch`es."""

    def __init__(self, it) -> None:
        self.it = it

    def __iter__(self) -> _Converted:
        return self

    def __next__(self) -> Batch:
        b = next(self.it)
        return Batch(b["image"], b["label"].astype(np.int32), tuple(p for p in b["bad"] if p))

    def close(self) -> None:
        """Stop the worker processes and free their shared memory."""
        self.it.close()


@dataclass
class StreamFeed:
    index: FolderIndex
    image_size: int
    workers: int
    kind: str = "stream"
    _pool: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def n_train(self) -> int:
        return len(self.index.train)

    @property
    def num_classes(self) -> int:
        return self.index.num_classes

    def summary(self) -> dict:
        return {
            "name": "folder",
            "num_classes": self.num_classes,
            "n_train": len(self.index.train),
            "n_val": len(self.index.val),
            "n_test": len(self.index.test),
            "image_shape": (self.image_size, self.image_size, 3),
            "loader": self.kind,
            "workers": self.workers,
        }

    def batches(self, space, config: TrainConfig, shard: Shard, start: int) -> _Converted:
        it = train_batches(
            self.index, space.resolutions, config.seed, config.epochs, config.batch_size,
            shard, self.workers, start,
        )  # fmt: skip
        return _Converted(it)

    def fingerprint(self) -> str:
        """What a checkpoint's folder must match: its files (names, labels, split)."""
        h = hashlib.sha256("\n".join(self.index.files).encode())
        h.update(self.index.train.tobytes())
        return f"folder:{len(self.index.files)}:{h.hexdigest()[:16]}"

    def pool(self, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """The training images kept for BN recalibration (uint8 at the decode size) and their
        file indices; unreadable ones are left out."""
        if self._pool is None:
            ids = pool_ids(self.index, seed)
            self._pool = decode_all(self.index, ids, self.image_size, self.workers)
        return self._pool

    def calibration(self, resolution: int, config: TrainConfig) -> list[np.ndarray]:
        return resized_calibration(self.pool(config.seed)[0], resolution, config)

    def validation(self, resolution: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        n = eval_batch(resolution)
        for b in plain_batches(self.index, self.index.val, resolution, n, self.workers):
            ok = np.asarray([not p for p in b["bad"]])
            yield normalise(b["image"][ok]), b["label"][ok].astype(np.int32)


def pool_ids(index: FolderIndex, seed: int) -> np.ndarray:
    """The file indices of the recalibration pool: a fixed random share of the training
    images (sorted, so the pool reads the folder in order)."""
    order = np.random.default_rng((seed, 78)).permutation(len(index.train))
    return np.sort(index.train[order[:CALIBRATION_POOL]])
