"""Datasets behind one interface, with a deterministic stratified train/val/test split.

Every loader returns uint8 RGB images of shape (N, H, W, 3) and int32 labels. Nothing is ever
unpickled and nothing is downloaded: user data is read from `data_dir` only.
"""

from __future__ import annotations

import importlib.util
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path

import numpy as np

from hwnas.supernet.splits import DataError, check_fractions, split_sizes, stratified_parts

DATASETS = ("digits", "cifar10", "folder", "npz")

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
_CIFAR_SIDE = 32
_CIFAR_RECORD = 1 + 3 * _CIFAR_SIDE * _CIFAR_SIDE  # label byte + R, G, B planes


@dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset already split into train, validation and test parts.

    Images are uint8 RGB arrays of shape (N, H, W, 3); labels are int32 arrays of shape (N,).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        shape = self.x_train.shape[1:]
        for part in ("train", "val", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3 or x.shape[1:] != shape:
                raise ValueError(f"x_{part} must be uint8 (N,H,W,3) like x_train, got {x.shape}")
            if y.dtype != np.int32 or y.shape != (len(x),):
                raise ValueError(f"y_{part} must be int32 of shape ({len(x)},), got {y.shape}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        h, w, c = self.x_train.shape[1:]
        return (int(h), int(w), int(c))

    def summary(self) -> dict:
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "n_train": len(self.y_train),
            "n_val": len(self.y_val),
            "n_test": len(self.y_test),
            "image_shape": self.image_shape,
        }


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    image_size: int = 32,
) -> Dataset:
    """Load dataset `name` and split it deterministically for `seed`.

    Args:
        name: one of `DATASETS`.
        data_dir: where the user data lives (ignored for "digits"); for "npz" the .npz file or a
            directory holding exactly one.
        seed: seeds the stratified split; the same seed always gives the same split.
        val_fraction: share of the samples used for validation (of the train files for cifar10).
        test_fraction: share used for testing (cifar10 uses test_batch.bin instead).
        image_size: side length images are resized to ("folder" only).

    Raises:
        DataError: the name, the fractions or the data are unusable.
    """
    loaders: dict[str, Callable[..., Dataset]] = {
        "digits": _load_digits,
        "cifar10": _load_cifar10,
        "folder": _load_folder,
        "npz": _load_npz,
    }
    if name not in loaders:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    check_fractions(val_fraction, test_fraction)
    if name != "digits" and data_dir is None:
        raise DataError(f"required for dataset {name!r}", field="data_dir")
    valid_size = isinstance(image_size, Integral) and not isinstance(image_size, bool)
    if not (valid_size and image_size >= 1):
        raise DataError(f"image size must be a positive integer, got {image_size!r}")
    return loaders[name](
        data_dir=None if data_dir is None else Path(data_dir),
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        image_size=int(image_size),
    )


def _split_all(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    class_names: tuple[str, ...],
    seed: int,
    val_fraction: float,
    test_fraction: float,
) -> Dataset:
    sizes = split_sizes(len(y), (val_fraction, test_fraction), f"dataset {name!r}")
    val, test, train = stratified_parts(y, seed, sizes)
    return Dataset(
        name=name,
        x_train=x[train],
        y_train=y[train],
        x_val=x[val],
        y_val=y[val],
        x_test=x[test],
        y_test=y[test],
        class_names=class_names,
    )


# --- digits ---------------------------------------------------------------------------------


def _load_digits(*, seed: int, val_fraction: float, test_fraction: float, **_: object) -> Dataset:
    images, y = _digits_arrays()
    gray = np.rint(images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    x = np.repeat(gray[..., None], 3, axis=-1)
    names = tuple(str(i) for i in range(10))
    return _split_all("digits", x, y, names, seed, val_fraction, test_fraction)


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The UCI digits (8x8, values 0-16) and their labels, from scikit-learn's copy of the file
    read without importing scikit-learn (its import is 1.8 s of a 5 s start on this machine);
    through `load_digits` where a scikit-learn keeps the file elsewhere."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise DataError("the digits dataset comes with scikit-learn; pip install scikit-learn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.images, digits.target.astype(np.int32)
    data = np.loadtxt(path, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int32)


# --- cifar10 --------------------------------------------------------------------------------


def _load_cifar10(*, data_dir: Path, seed: int, val_fraction: float, **_: object) -> Dataset:
    root = _cifar_root(data_dir)
    train_files = _cifar_train_files(root)
    test_file = root / "test_batch.bin"
    if not test_file.is_file():
        raise DataError(f"{test_file} is missing; the CIFAR-10 binary version includes it")
    class_names = _cifar_class_names(root)
    parts = [_read_cifar_file(path, len(class_names)) for path in train_files]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    x_test, y_test = _read_cifar_file(test_file, len(class_names))
    sizes = split_sizes(len(y), (val_fraction,), f"CIFAR-10 training data in {root}")
    val, train = stratified_parts(y, seed, sizes)
    return Dataset(
        name="cifar10",
        x_train=x[train],
        y_train=y[train],
        x_val=x[val],
        y_val=y[val],
        x_test=x_test,
        y_test=y_test,
        class_names=class_names,
    )


def _cifar_root(data_dir: Path) -> Path:
    if not data_dir.is_dir():
        raise DataError(f"CIFAR-10 directory {data_dir} does not exist", field="data_dir")
    nested = data_dir / "cifar-10-batches-bin"  # what extracting cifar-10-binary.tar.gz makes
    if not (data_dir / "data_batch_1.bin").exists() and nested.is_dir():
        return nested
    pickled = (data_dir / "data_batch_1").is_file() or (data_dir / "cifar-10-batches-py").is_dir()
    if not (data_dir / "data_batch_1.bin").exists() and pickled:
        raise DataError(
            f"{data_dir} looks like the pickled Python version of CIFAR-10, which is never "
            f"unpickled; download the binary version (cifar-10-binary.tar.gz) instead"
        )
    return data_dir


def _cifar_train_files(root: Path) -> list[Path]:
    paths = [root / f"data_batch_{i}.bin" for i in range(1, 6)]
    if not paths[0].is_file():
        raise DataError(f"{paths[0]} is missing; the CIFAR-10 binary training data starts there")
    present = [p.is_file() for p in paths]
    count = present.index(False) if False in present else len(paths)
    if any(present[count:]):
        later = paths[count + present[count:].index(True)].name
        raise DataError(
            f"{paths[count]} is missing but {later} exists; provide the batches in order "
            f"(data_batch_1.bin ... data_batch_k.bin)"
        )
    return paths[:count]


def _cifar_class_names(root: Path) -> tuple[str, ...]:
    meta = root / "batches.meta.txt"
    if not meta.is_file():
        return CIFAR10_CLASSES
    names = tuple(line.strip() for line in meta.read_text().splitlines() if line.strip())
    if not names:
        raise DataError(f"{meta} lists no class names; put one name per line or delete it")
    return names


def _read_cifar_file(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    raw = np.fromfile(path, dtype=np.uint8)
    leftover = raw.size % _CIFAR_RECORD
    if leftover:
        raise DataError(
            f"{path} is truncated or not CIFAR-10 binary: {raw.size} bytes is not a multiple of "
            f"the {_CIFAR_RECORD}-byte record ({leftover} bytes left over); re-download it"
        )
    if raw.size == 0:
        raise DataError(f"{path} is empty; re-download the CIFAR-10 binary version")
    records = raw.reshape(-1, _CIFAR_RECORD)
    labels = records[:, 0].astype(np.int32)
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        raise DataError(
            f"{path} record {bad[0]} has label {labels[bad[0]]} but there are only "
            f"{num_classes} classes; the file is corrupt or batches.meta.txt is incomplete"
        )
    planes = records[:, 1:].reshape(-1, 3, _CIFAR_SIDE, _CIFAR_SIDE)
    return np.ascontiguousarray(planes.transpose(0, 2, 3, 1)), labels


# --- folder of images -----------------------------------------------------------------------


def _load_folder(
    *, data_dir: Path, seed: int, val_fraction: float, test_fraction: float, image_size: int
) -> Dataset:
    from hwnas.supernet.folder import decode, index_folder

    index = index_folder(
        data_dir, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction
    )
    x = np.stack([decode(index.path(i), image_size) for i in range(len(index.files))])
    parts = {k: getattr(index, k) for k in ("train", "val", "test")}
    return Dataset(
        name="folder",
        **{f"x_{k}": x[v] for k, v in parts.items()},
        **{f"y_{k}": index.labels[v] for k, v in parts.items()},
        class_names=index.class_names,
    )


# --- npz ------------------------------------------------------------------------------------


def _load_npz(
    *, data_dir: Path, seed: int, val_fraction: float, test_fraction: float, **_: object
) -> Dataset:
    path = _npz_path(data_dir)
    x_raw, y_raw, names_raw = _read_npz(path)
    x = _npz_images(x_raw, path)
    y = _npz_labels(y_raw, len(x), path)
    class_names = _npz_class_names(names_raw, y, path)
    return _split_all("npz", x, y, class_names, seed, val_fraction, test_fraction)


def _npz_path(data_dir: Path) -> Path:
    if data_dir.is_dir():
        found = sorted(data_dir.glob("*.npz"))
        if len(found) != 1:
            raise DataError(
                f"{data_dir} holds {len(found)} .npz files, expected exactly one; "
                "give the file itself",
                field="data_dir",
            )
        return found[0]
    if not data_dir.is_file():
        raise DataError(f".npz file {data_dir} does not exist", field="data_dir")
    return data_dir


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    # Checked up front: for anything that is not a zip, np.load falls back to .npy or pickle.
    if not zipfile.is_zipfile(path):
        raise DataError(
            f"{path} is not an .npz archive (not a zip file); save the arrays with "
            f"np.savez(path, x=images, y=labels)"
        )
    try:
        # Our own handle, because np.load leaks its file when the zip turns out to be corrupt.
        with path.open("rb") as handle, np.load(handle, allow_pickle=False) as archive:
            _require_arrays(archive.files, path)
            names = _member(archive, "class_names", path) if "class_names" in archive else None
            return _member(archive, "x", path), _member(archive, "y", path), names
    except DataError:
        raise
    except ValueError as err:
        if "allow_pickle" not in str(err):  # e.g. a member that is not a valid .npy
            raise DataError(f"cannot read {path} as .npz ({err}); re-save it") from err
        raise DataError(
            f"{path} holds an object (pickled) array, which is never unpickled; "
            f"save plain numeric/string arrays with np.savez"
        ) from err
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise DataError(f"cannot read {path} as .npz ({err}); re-save it with np.savez") from err


def _member(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    value = archive[key]
    # NpzFile hands back raw bytes for a member that is not a .npy file.
    if not isinstance(value, np.ndarray):
        raise DataError(f"{path}: {key!r} is not a valid .npy array; re-save it with np.savez")
    return value


def _require_arrays(files: list[str], path: Path) -> None:
    for key in ("x", "y"):
        if key not in files:
            raise DataError(
                f"{path} has no array {key!r} (found: {', '.join(files) or 'none'}); "
                f"save images as 'x' and labels as 'y'"
            )


def _npz_images(x: np.ndarray, path: Path) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise DataError(
            f"{path}: 'x' has shape {x.shape}; expected (N,H,W), (N,H,W,1) or (N,H,W,3)"
        )
    if len(x) == 0:
        raise DataError(f"{path}: 'x' holds no samples")
    if x.dtype != np.uint8:
        x = _to_uint8(x, path)
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


def _to_uint8(x: np.ndarray, path: Path) -> np.ndarray:
    if x.dtype.kind not in "iuf":
        raise DataError(f"{path}: 'x' has dtype {x.dtype}; store images as uint8 or float")
    values = x.astype(np.float64)
    if not np.isfinite(values).all():
        raise DataError(f"{path}: 'x' contains NaN or infinite values; clean the images first")
    # Floats in [0, 1] are the usual normalised form; anything else is taken as 0..255.
    if x.dtype.kind == "f" and values.max() <= 1.0:
        values = values * 255.0
    return np.rint(values.clip(0.0, 255.0)).astype(np.uint8)


def _npz_labels(y: np.ndarray, n: int, path: Path) -> np.ndarray:
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{path}: 'y' has shape {y.shape} but 'x' has {n} samples; need ({n},)")
    if y.dtype.kind == "f":
        if not (np.isfinite(y).all() and (y == np.round(y)).all()):
            raise DataError(f"{path}: 'y' has non-integer labels; labels must be 0..K-1")
    elif y.dtype.kind not in "iu":
        raise DataError(f"{path}: 'y' has dtype {y.dtype}; labels must be integers 0..K-1")
    if (y < 0).any():
        raise DataError(f"{path}: 'y' has negative labels (min {y.min()}); use 0..K-1")
    if y.max() > np.iinfo(np.int32).max:
        raise DataError(f"{path}: 'y' has a label too large ({y.max()}); use 0..K-1")
    return y.astype(np.int32)


def _npz_class_names(names: np.ndarray | None, y: np.ndarray, path: Path) -> tuple[str, ...]:
    if names is None:
        return tuple(str(i) for i in range(int(y.max()) + 1))
    if names.ndim != 1 or names.dtype.kind not in "US" or len(names) == 0:
        raise DataError(f"{path}: 'class_names' must be a non-empty 1-D array of strings")
    decoded = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist())
    if y.max() >= len(decoded):
        raise DataError(
            f"{path}: label {y.max()} is out of range for {len(decoded)} class_names; "
            f"labels must be 0..{len(decoded) - 1}"
        )
    return decoded
