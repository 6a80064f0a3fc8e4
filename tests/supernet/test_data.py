from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hwnas.supernet.data import CIFAR10_CLASSES, DATASETS, DataError, Dataset, load_dataset

# --- helpers --------------------------------------------------------------------------------


def _distinct_images(n: int, side: int = 4) -> np.ndarray:
    """n images that all differ: the index is written into the first two pixels."""
    x = np.zeros((n, side, side, 3), dtype=np.uint8)
    x[:, 0, 0, 0] = np.arange(n) % 256
    x[:, 0, 1, 0] = np.arange(n) // 256
    return x


def _hashes(x: np.ndarray) -> set[str]:
    return {hashlib.sha1(img.tobytes()).hexdigest() for img in x}


def _cifar_records(labels: list[int], offset: int = 0) -> np.ndarray:
    """CIFAR-10 binary records; record i has R(2,5)=200, G(2,5)=100, B(2,5)=50, id in R(0,0)."""
    rec = np.zeros((len(labels), 3073), dtype=np.uint8)
    rec[:, 0] = labels
    planes = rec[:, 1:].reshape(-1, 3, 32, 32)  # a view: R, G, B planes, row-major
    planes[:, 0, 2, 5] = 200
    planes[:, 1, 2, 5] = 100
    planes[:, 2, 2, 5] = 50
    planes[:, 0, 0, 0] = offset + np.arange(len(labels))
    return rec


def _write_cifar(root: Path, batches: int = 2, per_batch: int = 20, test: int = 10) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for b in range(batches):
        labels = [i % 10 for i in range(per_batch)]
        _cifar_records(labels, offset=b * per_batch).tofile(root / f"data_batch_{b + 1}.bin")
    _cifar_records([i % 10 for i in range(test)], offset=200).tofile(root / "test_batch.bin")


def _write_png(path: Path, color: tuple[int, int, int], mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    value = color[0] if mode == "L" else color
    Image.new(mode, (6, 5), value).save(path)


def _write_folder(root: Path, per_class: int = 4) -> None:
    for i in range(per_class):
        _write_png(root / "cat" / f"c{i}.png", (200, 10, 10))
        _write_png(root / "dog" / f"d{i}.PNG", (10, 200, 10))
        (root / "emu").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (7, 7), (10, 10, 200)).save(root / "emu" / f"e{i}.jpg", quality=95)
        (root / "emu" / f"e{i}.JPEG").write_bytes((root / "emu" / f"e{i}.jpg").read_bytes())


def _write_npz(path: Path, **arrays: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def _labels(n: int, k: int = 3) -> np.ndarray:
    return (np.arange(n) % k).astype(np.int64)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits", seed=0)


# --- digits, splitting ----------------------------------------------------------------------


def test_digits_shapes_and_dtypes(digits: Dataset) -> None:
    assert digits.image_shape == (8, 8, 3)
    assert digits.num_classes == 10
    assert digits.class_names == tuple(str(i) for i in range(10))
    for x, y in [
        (digits.x_train, digits.y_train),
        (digits.x_val, digits.y_val),
        (digits.x_test, digits.y_test),
    ]:
        assert x.dtype == np.uint8 and y.dtype == np.int32
        assert x.shape[1:] == (8, 8, 3) and y.shape == (len(x),)
        assert np.array_equal(x[..., 0], x[..., 1]) and np.array_equal(x[..., 0], x[..., 2])
    assert digits.x_train.max() == 255 and digits.x_train.min() == 0
    summary = digits.summary()
    assert summary["n_train"] + summary["n_val"] + summary["n_test"] == 1797
    assert summary["n_val"] == summary["n_test"] == round(1797 * 0.15)
    assert summary == {**summary, "name": "digits", "num_classes": 10, "image_shape": (8, 8, 3)}


def test_digits_scaling_matches_sklearn() -> None:
    from sklearn.datasets import load_digits

    raw = load_digits().images
    ds = load_dataset("digits", val_fraction=0.1, test_fraction=0.1)
    pool = np.concatenate([ds.x_train, ds.x_val, ds.x_test])[..., 0]
    expected = np.rint(raw * 255 / 16).astype(np.uint8)
    assert _hashes(pool[..., None]) == _hashes(expected[..., None])


def test_same_seed_same_split(digits: Dataset) -> None:
    again = load_dataset("digits", seed=0)
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert np.array_equal(getattr(digits, field), getattr(again, field))


def test_different_seed_different_split(digits: Dataset) -> None:
    other = load_dataset("digits", seed=1)
    assert len(other.y_val) == len(digits.y_val)
    assert not np.array_equal(other.x_val, digits.x_val)


def test_splits_do_not_overlap_and_cover_everything(tmp_path: Path) -> None:
    n = 300
    path = _write_npz(tmp_path / "d.npz", x=_distinct_images(n), y=_labels(n, 7))
    ds = load_dataset("npz", path, seed=3, val_fraction=0.2, test_fraction=0.1)
    train, val, test = _hashes(ds.x_train), _hashes(ds.x_val), _hashes(ds.x_test)
    assert len(train) == len(ds.x_train) and len(val) == len(ds.x_val)
    assert not (train & val or train & test or val & test)
    assert train | val | test == _hashes(_distinct_images(n))
    assert (len(val), len(test)) == (60, 30)


def test_split_is_stratified(digits: Dataset) -> None:
    for label in range(10):
        total = sum(int((y == label).sum()) for y in (digits.y_train, digits.y_val, digits.y_test))
        for y in (digits.y_val, digits.y_test):
            assert abs(int((y == label).sum()) - 0.15 * total) <= 2


def test_imbalanced_classes_keep_their_share(tmp_path: Path) -> None:
    y = np.array([0] * 90 + [1] * 10)
    path = _write_npz(tmp_path / "d.npz", x=_distinct_images(100), y=y)
    ds = load_dataset("npz", path, val_fraction=0.2, test_fraction=0.2)
    assert (ds.y_val == 1).sum() == 2 and (ds.y_test == 1).sum() == 2


def test_tiny_dataset_gets_one_sample_per_split(tmp_path: Path) -> None:
    path = _write_npz(tmp_path / "d.npz", x=_distinct_images(3), y=np.array([0, 1, 2]))
    ds = load_dataset("npz", path)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (1, 1, 1)
    assert ds.num_classes == 3


def test_too_small_to_split(tmp_path: Path) -> None:
    path = _write_npz(tmp_path / "d.npz", x=_distinct_images(2), y=np.array([0, 1]))
    with pytest.raises(DataError, match="only 2 samples, too few to split"):
        load_dataset("npz", path)


@pytest.mark.parametrize(
    ("val", "test", "match"),
    [
        (0.0, 0.1, "validation fraction"),
        (1.0, 0.1, "validation fraction"),
        (-0.1, 0.1, "validation fraction"),
        (float("nan"), 0.1, "validation fraction"),
        (0.1, 0.0, "test fraction"),
        (0.1, 1.5, "test fraction"),
        (0.5, 0.5, "sum to less than 1"),
        (0.7, 0.4, "sum to less than 1"),
    ],
)
def test_bad_fractions(val: float, test: float, match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_dataset("digits", val_fraction=val, test_fraction=test)


def test_unknown_dataset_lists_known_ones() -> None:
    assert DATASETS == ("digits", "cifar10", "folder", "npz")
    with pytest.raises(DataError, match=r"unknown dataset 'mnist'.*digits, cifar10, folder, npz"):
        load_dataset("mnist")


@pytest.mark.parametrize("name", ["cifar10", "folder", "npz"])
def test_data_dir_required(name: str) -> None:
    with pytest.raises(DataError, match=f"required for dataset '{name}'") as e:
        load_dataset(name)
    assert e.value.field == "data_dir"  # the CLI shows it as --data-dir


def test_dataset_rejects_inconsistent_arrays() -> None:
    x = np.zeros((2, 4, 4, 3), np.uint8)
    y = np.zeros(2, np.int32)
    with pytest.raises(ValueError, match="x_val"):
        Dataset("d", x, y, x.astype(np.float32), y, x, y, ("a",))
    with pytest.raises(ValueError, match="y_test"):
        Dataset("d", x, y, x, y, x, y[:1], ("a",))


# --- cifar10 --------------------------------------------------------------------------------


def test_cifar10_round_trip(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    ds = load_dataset("cifar10", tmp_path, val_fraction=0.25)
    assert ds.class_names == CIFAR10_CLASSES
    assert ds.image_shape == (32, 32, 3)
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (30, 10, 10)
    # The R plane becomes channel 0, G channel 1, B channel 2; rows stay rows.
    for x in (ds.x_train, ds.x_val, ds.x_test):
        assert (x[:, 2, 5] == [200, 100, 50]).all()
        assert x[:, 5, 2].sum() == 0
    ids = np.concatenate([ds.x_train, ds.x_val])[:, 0, 0, 0]
    assert sorted(ids.tolist()) == list(range(40))
    assert ds.x_test[:, 0, 0, 0].tolist() == list(range(200, 210))
    assert ds.y_test.tolist() == list(range(10))
    assert ds.y_train.dtype == np.int32 and ds.x_train.flags.c_contiguous
    # Labels follow their images: record id i was written with label i % 10.
    assert (ds.y_train == ds.x_train[:, 0, 0, 0] % 10).all()


def test_cifar10_class_names_from_meta(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    names = [f"class{i}" for i in range(10)]
    (tmp_path / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
    ds = load_dataset("cifar10", tmp_path)
    assert ds.class_names == tuple(names)


def test_cifar10_extracted_tarball_layout(tmp_path: Path) -> None:
    _write_cifar(tmp_path / "cifar-10-batches-bin", batches=1)
    ds = load_dataset("cifar10", tmp_path)
    assert len(ds.y_train) + len(ds.y_val) == 20


def test_cifar10_split_depends_on_seed(tmp_path: Path) -> None:
    _write_cifar(tmp_path, batches=5)
    a, b = (load_dataset("cifar10", tmp_path, seed=s) for s in (0, 1))
    a2 = load_dataset("cifar10", tmp_path, seed=0)
    assert np.array_equal(a.x_val, a2.x_val)
    assert not np.array_equal(a.x_val, b.x_val)


def test_cifar10_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("cifar10", tmp_path / "nope")


def test_cifar10_missing_first_batch(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    (tmp_path / "data_batch_1.bin").unlink()
    with pytest.raises(DataError, match=r"data_batch_1\.bin is missing"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_batches_must_be_a_prefix(tmp_path: Path) -> None:
    _write_cifar(tmp_path, batches=3)
    (tmp_path / "data_batch_2.bin").unlink()
    with pytest.raises(DataError, match=r"data_batch_2\.bin is missing but data_batch_3\.bin"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_missing_test_batch(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    (tmp_path / "test_batch.bin").unlink()
    with pytest.raises(DataError, match=r"test_batch\.bin is missing"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_pickled_version_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data_batch_1").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(DataError, match=r"pickled Python version.*cifar-10-binary\.tar\.gz"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_truncated_record(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    path = tmp_path / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"data_batch_2\.bin is truncated.*2973 bytes left over"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_empty_file(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    (tmp_path / "test_batch.bin").write_bytes(b"")
    with pytest.raises(DataError, match=r"test_batch\.bin is empty"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_label_out_of_range(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    _cifar_records([0, 1, 10]).tofile(tmp_path / "test_batch.bin")
    with pytest.raises(DataError, match=r"test_batch\.bin record 2 has label 10.*only 10 classes"):
        load_dataset("cifar10", tmp_path)


def test_cifar10_label_beyond_meta_names(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    (tmp_path / "batches.meta.txt").write_text("a\nb\n")
    with pytest.raises(DataError, match=r"data_batch_1\.bin record 2 has label 2"):
        load_dataset("cifar10", tmp_path)


# --- folder ---------------------------------------------------------------------------------


def test_folder_png_jpg_and_resize(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    ds = load_dataset("folder", tmp_path, image_size=12, val_fraction=0.25, test_fraction=0.25)
    assert ds.class_names == ("cat", "dog", "emu")
    assert ds.image_shape == (12, 12, 3)
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == 16
    x = np.concatenate([ds.x_train, ds.x_val, ds.x_test]).astype(int)
    y = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    assert np.bincount(y).tolist() == [4, 4, 8]
    assert (x[y == 0] == [200, 10, 10]).all()  # PNG is lossless and the image is one colour
    assert (x[y == 1] == [10, 200, 10]).all()
    assert np.abs(x[y == 2] - [10, 10, 200]).max() <= 8  # JPEG is lossy


def test_folder_grayscale_becomes_rgb(tmp_path: Path) -> None:
    for i in range(3):
        _write_png(tmp_path / "a" / f"{i}.png", (77, 0, 0), mode="L")
        _write_png(tmp_path / "b" / f"{i}.png", (1, 2, 3), mode="RGBA")
    ds = load_dataset("folder", tmp_path, image_size=4)
    x = np.concatenate([ds.x_train, ds.x_val, ds.x_test])
    y = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    assert x.shape == (6, 4, 4, 3)
    assert (x[y == 0] == 77).all()
    assert (x[y == 1] == [1, 2, 3]).all()


def test_folder_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"image folder .*nope does not exist"):
        load_dataset("folder", tmp_path / "nope")


def test_folder_without_class_folders(tmp_path: Path) -> None:
    _write_png(tmp_path / "loose.png", (1, 1, 1))
    with pytest.raises(DataError, match="has no class sub-folders"):
        load_dataset("folder", tmp_path)


def test_folder_empty_class(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    (tmp_path / "fox").mkdir()
    (tmp_path / "fox" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"class folder .*fox has no images"):
        load_dataset("folder", tmp_path)


def test_folder_corrupt_image(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=r"cannot read image .*broken\.png"):
        load_dataset("folder", tmp_path)


def test_folder_truncated_image(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    Image.new("RGB", (64, 64), (5, 5, 5)).save(tmp_path / "cat" / "big.jpg")
    data = (tmp_path / "cat" / "big.jpg").read_bytes()
    (tmp_path / "cat" / "big.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cannot read image .*big\.jpg"):
        load_dataset("folder", tmp_path)


@pytest.mark.parametrize("size", [0, -3, 2.5, True])
def test_folder_bad_image_size(tmp_path: Path, size: object) -> None:
    _write_folder(tmp_path)
    with pytest.raises(DataError, match="image size must be a positive integer"):
        load_dataset("folder", tmp_path, image_size=size)  # type: ignore[arg-type]


# --- npz ------------------------------------------------------------------------------------


def _npz_pool(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    x = np.concatenate([ds.x_train, ds.x_val, ds.x_test])
    y = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    return x, y


def test_npz_uint8_with_class_names(tmp_path: Path) -> None:
    x = _distinct_images(20)
    names = np.array(["ant", "bee", "cow"])
    path = _write_npz(tmp_path / "d.npz", x=x, y=_labels(20), class_names=names)
    ds = load_dataset("npz", path)
    assert ds.class_names == ("ant", "bee", "cow")
    pool_x, pool_y = _npz_pool(ds)
    assert _hashes(pool_x) == _hashes(x)
    ids = pool_x[:, 0, 0, 0].astype(int)
    assert (pool_y == ids % 3).all()


def test_npz_float_unit_range_is_scaled(tmp_path: Path) -> None:
    x = np.zeros((10, 3, 3, 3), np.float32)
    x[:, 0, 0] = [1.0, 0.5, 0.0]
    path = _write_npz(tmp_path / "d.npz", x=x, y=_labels(10, 2))
    pool_x, _ = _npz_pool(load_dataset("npz", path))
    assert pool_x.dtype == np.uint8
    assert (pool_x[:, 0, 0] == [255, 128, 0]).all()
    assert load_dataset("npz", path).class_names == ("0", "1")


def test_npz_float_above_one_is_clipped(tmp_path: Path) -> None:
    x = np.zeros((10, 3, 3, 3), np.float64)
    x[:, 0, 0] = [300.0, 12.4, -5.0]
    path = _write_npz(tmp_path / "d.npz", x=x, y=_labels(10, 2).astype(np.float32))
    pool_x, pool_y = _npz_pool(load_dataset("npz", path))
    assert (pool_x[:, 0, 0] == [255, 12, 0]).all()
    assert pool_y.dtype == np.int32


@pytest.mark.parametrize("shape", [(9, 5, 5), (9, 5, 5, 1)])
def test_npz_grayscale(tmp_path: Path, shape: tuple[int, ...]) -> None:
    x = np.full(shape, 42, np.uint8)
    path = _write_npz(tmp_path / "d.npz", x=x, y=_labels(9))
    ds = load_dataset("npz", path)
    assert ds.image_shape == (5, 5, 3)
    assert (_npz_pool(ds)[0] == 42).all()


def test_npz_directory_with_one_file(tmp_path: Path) -> None:
    _write_npz(tmp_path / "only.npz", x=_distinct_images(9), y=_labels(9))
    (tmp_path / "other.txt").write_text("ignored")
    names = np.array([b"a", b"b", b"c"])
    assert load_dataset("npz", tmp_path).num_classes == 3
    _write_npz(tmp_path / "only.npz", x=_distinct_images(9), y=_labels(9), class_names=names)
    assert load_dataset("npz", tmp_path).class_names == ("a", "b", "c")


def test_npz_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"\.npz file .*nope\.npz does not exist"):
        load_dataset("npz", tmp_path / "nope.npz")


@pytest.mark.parametrize("count", [0, 2])
def test_npz_directory_needs_exactly_one(tmp_path: Path, count: int) -> None:
    for i in range(count):
        _write_npz(tmp_path / f"{i}.npz", x=_distinct_images(9), y=_labels(9))
    with pytest.raises(DataError, match=f"holds {count} .npz files, expected exactly one"):
        load_dataset("npz", tmp_path)


@pytest.mark.parametrize("missing", ["x", "y"])
def test_npz_missing_array(tmp_path: Path, missing: str) -> None:
    arrays = {"x": _distinct_images(9), "y": _labels(9)}
    del arrays[missing]
    path = _write_npz(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=f"d.npz has no array '{missing}'"):
        load_dataset("npz", path)


def test_npz_length_mismatch(tmp_path: Path) -> None:
    path = _write_npz(tmp_path / "d.npz", x=_distinct_images(9), y=_labels(8))
    with pytest.raises(DataError, match=r"d\.npz: 'y' has shape \(8,\) but 'x' has 9 samples"):
        load_dataset("npz", path)


@pytest.mark.parametrize(
    ("y", "names", "match"),
    [
        (np.array([0, 1, -1] * 3), None, "negative labels"),
        (np.array([0.0, 1.5, 2.0] * 3), None, "non-integer labels"),
        (np.array([0.0, np.nan, 2.0] * 3), None, "non-integer labels"),
        (np.array([0, 1, 3] * 3), np.array(["a", "b", "c"]), "label 3 is out of range for 3"),
        (np.array(["a", "b", "c"] * 3), None, "labels must be integers"),
        (np.array([0, 1, 2] * 3), np.array([1, 2, 3]), "'class_names' must be"),
    ],
)
def test_npz_bad_labels(
    tmp_path: Path, y: np.ndarray, names: np.ndarray | None, match: str
) -> None:
    arrays = {"x": _distinct_images(9), "y": y}
    if names is not None:
        arrays["class_names"] = names
    path = _write_npz(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=match):
        load_dataset("npz", path)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.zeros((9, 4), np.uint8), r"'x' has shape \(9, 4\)"),
        (np.zeros((9, 4, 4, 2), np.uint8), r"'x' has shape \(9, 4, 4, 2\)"),
        (np.zeros((9, 4, 4, 3, 1), np.uint8), "expected"),
        (np.full((9, 4, 4), np.nan), "NaN or infinite"),
        (np.zeros((9, 4, 4), np.complex64), "dtype complex64"),
    ],
)
def test_npz_bad_images(tmp_path: Path, x: np.ndarray, match: str) -> None:
    path = _write_npz(tmp_path / "d.npz", x=x, y=_labels(9))
    with pytest.raises(DataError, match=match):
        load_dataset("npz", path)


def test_npz_empty(tmp_path: Path) -> None:
    path = _write_npz(tmp_path / "d.npz", x=np.zeros((0, 4, 4), np.uint8), y=_labels(0))
    with pytest.raises(DataError, match="holds no samples"):
        load_dataset("npz", path)


def test_npz_object_array_is_not_unpickled(tmp_path: Path) -> None:
    y = np.array([0, 1, "two"] * 3, dtype=object)
    path = _write_npz(tmp_path / "d.npz", x=_distinct_images(9), y=y)
    with pytest.raises(DataError, match=r"d\.npz holds an object \(pickled\) array"):
        load_dataset("npz", path)


def test_npz_not_an_archive(tmp_path: Path) -> None:
    garbage = tmp_path / "g.npz"
    garbage.write_bytes(b"this is not a zip file at all")
    with pytest.raises(DataError, match=r"g\.npz is not an \.npz archive"):
        load_dataset("npz", garbage)
    npy = tmp_path / "a.npz"
    with npy.open("wb") as f:
        np.save(f, np.zeros(3))
    with pytest.raises(DataError, match=r"a\.npz is not an \.npz archive"):
        load_dataset("npz", npy)
    truncated = tmp_path / "t.npz"
    _write_npz(tmp_path / "full.npz", x=_distinct_images(9), y=_labels(9))
    truncated.write_bytes((tmp_path / "full.npz").read_bytes()[:200])
    with pytest.raises(DataError, match=r"t\.npz is not an \.npz archive"):
        load_dataset("npz", truncated)


def test_npz_corrupt_member(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", b"not an npy header")
        archive.writestr("y.npy", b"nor this")
    with pytest.raises(DataError, match=r"bad\.npz: 'x' is not a valid \.npy array"):
        load_dataset("npz", path)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", b"\x93NUMPY\x01\x00garbage header")
        archive.writestr("y.npy", b"")
    with pytest.raises(DataError, match=r"cannot read .*bad\.npz as \.npz"):
        load_dataset("npz", path)


def test_digits_read_without_scikit_learn_are_its_load_digits():
    from sklearn.datasets import load_digits

    from hwnas.supernet.data import _digits_arrays

    images, labels = _digits_arrays()
    want = load_digits()
    np.testing.assert_array_equal(images, want.images)
    np.testing.assert_array_equal(labels, want.target)
