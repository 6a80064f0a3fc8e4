"""Which feed a training run reads through, chosen from the dataset and its size.

Image folders whose decoded images fit in `MEMORY_MAX_BYTES` are decoded into memory once
(fastest: no decoding per epoch); larger ones are streamed through grain with background
workers (memory independent of the number of images, random-resized crop and flip at 64 px
and above). The `loader` setting (memory or stream) overrides the choice; the choice is
logged. Other datasets (digits, CIFAR-10, npz) are arrays already and always live in memory.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from hwnas.search.output import UserError
from hwnas.supernet.data import DataError, Dataset, load_dataset
from hwnas.supernet.feed import MemoryFeed, StreamFeed
from hwnas.supernet.folder import FolderIndex, index_folder
from hwnas.supernet.loader import decode_all, default_workers
from hwnas.supernet.train_config import LOADERS

logger = logging.getLogger(__name__)

MEMORY_MAX_BYTES = 1 << 30  # decoded uint8 images; about 7,100 images at 224 px
VAL_FRACTION = TEST_FRACTION = 0.15  # load_dataset's defaults


def make_feed(
    dataset: str,
    data_dir: str | Path | None,
    image_size: int,
    seed: int,
    loader: str,
    workers: int | None,
) -> MemoryFeed | StreamFeed:
    """The feed of a run, with one line on stderr saying which and why; `workers` decode a
    streamed folder (None: cores - 1)."""
    if loader not in LOADERS:
        raise UserError(
            f"unknown {{field}} {loader!r}; choose one of {', '.join(LOADERS)}", field="loader"
        )
    if workers is not None and workers < 0:
        raise UserError(f"{{field}} must be 0 or more, got {workers}", field="decode_workers")
    if dataset != "folder":
        if loader == "stream":
            raise UserError(f"{{field}} stream reads image folders only; {dataset!r} is held "
                            "in memory (drop {field}, or train on an image folder)",
                            field="loader")  # fmt: skip
        data = load_dataset(dataset, data_dir, seed=seed, image_size=image_size)
        logger.info(f"data: {dataset}, {len(data.y_train)} training images, in memory")
        return MemoryFeed(data)
    index = _index(data_dir, seed)
    nbytes = len(index.files) * image_size * image_size * 3
    fits = nbytes <= MEMORY_MAX_BYTES
    choice = loader if loader != "auto" else "memory" if fits else "stream"
    why = f"{nbytes / 2**20:,.0f} MB decoded at {image_size} px"
    if loader == "auto":
        why += f", {'within' if fits else 'over'} the {MEMORY_MAX_BYTES / 2**20:,.0f} MB limit"
    n = len(index.files)
    if choice == "memory":
        logger.info(
            f"data: {n} images in {index.num_classes} classes, decoded into memory ({why})"
        )
        return MemoryFeed(load_dataset("folder", data_dir, seed=seed, image_size=image_size))
    w = default_workers() if workers is None else workers
    logger.info(f"data: {n} images in {index.num_classes} classes, streamed by {w} worker "
        f"processes ({why})")  # fmt: skip
    return StreamFeed(index, image_size, w)


def _index(data_dir: str | Path | None, seed: int) -> FolderIndex:
    if data_dir is None:
        raise DataError("{field} is required for dataset 'folder'", field="data_dir")
    return index_folder(data_dir, seed=seed, val_fraction=VAL_FRACTION,
                        test_fraction=TEST_FRACTION)  # fmt: skip


def streamed_dataset(data_dir: str | Path | None, image_size: int, seed: int) -> Dataset:
    """A streamed run's data for search, export and measurement, read by the same loader:
    `x_train` is the recalibration pool the run validated with (`StreamFeed.pool`), `x_val`
    the validation images; the test images are not decoded (`x_test` is empty)."""
    index = _index(data_dir, seed)
    feed = StreamFeed(index, image_size, default_workers())
    x_pool, pool = feed.pool(seed)
    x_val, val = decode_all(index, index.val, image_size, feed.workers)  # unreadable: left out
    empty = np.zeros((0, image_size, image_size, 3), np.uint8)
    return Dataset(
        name="folder",
        x_train=x_pool,
        y_train=index.labels[pool],
        x_val=x_val,
        y_val=index.labels[val],
        x_test=empty,
        y_test=index.labels[index.test[:0]],
        class_names=index.class_names,
    )
