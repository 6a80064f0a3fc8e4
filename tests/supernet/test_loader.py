"""The streaming loader: deterministic order, exact resumption, unreadable images."""

from __future__ import annotations

import numpy as np
import pytest
from folders import make_folder

from hwnas.supernet.data import DataError, load_dataset
from hwnas.supernet.folder import decode, index_folder
from hwnas.supernet.loader import Shard, decode_all, train_batches
from hwnas.supernet.order import step_resolution
from hwnas.supernet.train_config import TrainConfig
from hwnas.supernet.train_step import epoch_batches

RES = (64, 72)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("imgs"))


def index_of(root, seed=0):
    return index_folder(root, seed=seed, val_fraction=0.15, test_fraction=0.15)


def take(it, n):
    return [next(it) for _ in range(n)]


def test_index_splits_like_the_in_memory_loader(folder):
    index = index_of(folder)
    data = load_dataset("folder", folder, seed=0, image_size=64)
    np.testing.assert_array_equal(index.labels[index.train], data.y_train)
    np.testing.assert_array_equal(index.labels[index.val], data.y_val)
    first = decode(index.path(int(index.train[0])), 64)
    np.testing.assert_array_equal(first, data.x_train[0])


def test_order_is_the_in_memory_order_and_deterministic(folder):
    index = index_of(folder)
    batch, seed = 8, 3
    config = TrainConfig(batch_size=batch, seed=seed)
    a = take(train_batches(index, RES, seed, 2, batch), 12)
    b = take(train_batches(index, RES, seed, 2, batch), 12)
    steps = len(index.train) // batch
    for step, (x, y) in enumerate(zip(a, b, strict=True)):
        np.testing.assert_array_equal(x["image"], y["image"])
        epoch, s = divmod(step, steps)
        want = index.labels[index.train[epoch_batches(len(index.train), config, epoch)[s]]]
        np.testing.assert_array_equal(x["label"], want)
        assert x["image"].shape[1] == step_resolution(RES, seed, step)
    other = take(train_batches(index, RES, seed + 1, 2, batch), 1)[0]
    assert not np.array_equal(other["label"], a[0]["label"])


def test_augmentation_crops_and_flips_at_64_px_and_above(folder):
    path = index_of(folder).path(0)
    plain = decode(path, 64)
    crops = [decode(path, 64, np.random.default_rng(i)) for i in range(4)]
    assert all(c.shape == (64, 64, 3) and c.dtype == np.uint8 for c in crops)
    assert all(not np.array_equal(c, plain) for c in crops)
    np.testing.assert_array_equal(decode(path, 32, np.random.default_rng(0)), decode(path, 32))


def test_shards_split_every_global_batch(folder):
    index = index_of(folder)
    whole = take(train_batches(index, RES, 0, 1, 8), 3)
    parts = [take(train_batches(index, RES, 0, 1, 8, Shard(p, 2)), 3) for p in range(2)]
    for step in range(3):
        joined = np.concatenate([parts[0][step]["image"], parts[1][step]["image"]])
        np.testing.assert_array_equal(joined, whole[step]["image"])


def test_starting_at_a_step_continues_whatever_the_workers(folder):
    index = index_of(folder)
    ref = take(train_batches(index, RES, 0, 2, 8), 7)
    head = take(train_batches(index, RES, 0, 2, 8, workers=1), 4)
    it = train_batches(index, RES, 0, 2, 8, workers=2, start=4)  # resumed with more workers
    tail = take(it, 3)
    it.close()
    for got, want in zip(head + tail, ref, strict=True):
        np.testing.assert_array_equal(got["image"], want["image"])
        np.testing.assert_array_equal(got["label"], want["label"])


def test_unreadable_image_is_replaced_by_the_next_with_its_label_and_named(tmp_path):
    root = make_folder(tmp_path / "bad", per_class=10)
    index = index_of(root)
    # the last training image of class 0: its replacement is the first of class 1
    last = int(index.train[index.labels[index.train] == 0][-1])
    broken = index.path(last)
    broken.write_bytes(b"not a jpeg")
    batches = take(train_batches(index, RES, 0, 1, 4), len(index.train) // 4)
    bad = [p for b in batches for p in b["bad"] if p]
    assert bad == [str(broken)]
    assert all(len(b["label"]) == 4 for b in batches)
    got = [(int(y), str(p)) for b in batches for y, p in zip(b["label"], b["bad"], strict=True)]
    assert (1, str(broken)) in got  # stands in for class 0's image with class 1's label
    images, kept = decode_all(index, np.arange(len(index.files)), 64)
    assert last not in kept and len(images) == len(kept) == len(index.files) - 1


def test_empty_class_folder_and_single_class_are_refused(tmp_path):
    root = make_folder(tmp_path / "empty", classes=2, per_class=4)
    (root / "class9").mkdir()
    with pytest.raises(DataError, match="class9 has no images"):
        index_of(root)
    one = make_folder(tmp_path / "one", classes=1, per_class=8)
    with pytest.raises(DataError, match="one class"):
        index_of(one)
    with pytest.raises(DataError, match="one class"):
        load_dataset("folder", one, image_size=32)
