"""An image folder as an index of files: class folders, the split, and decoding one image.

`index_folder` lists `DIR/CLASS/*.{png,jpg,jpeg}` (nothing is decoded) and splits the files as
the in-memory loader splits the decoded images, so both paths train, validate and test on the
same images. `decode` reads one image at a given size, plainly resized (validation, BN
recalibration, export) or with the training augmentation of 224-px recipes (Once-for-All,
torchvision): a random-resized crop (8-100% of the area, aspect 3/4-4/3) and a horizontal flip,
used at 64 px and above.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwnas.supernet.splits import DataError, split_sizes, stratified_parts

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
AUGMENT_MIN_SIZE = 64  # below this the images are only resized (digits, CIFAR-sized data)
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)


@dataclass(frozen=True, eq=False)
class FolderIndex:
    """The files of an image folder, their labels and the train/val/test split (index arrays
    into `files`, each sorted)."""

    root: Path
    files: tuple[str, ...]  # paths relative to `root`
    labels: np.ndarray  # int32, one per file
    class_names: tuple[str, ...]
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def path(self, i: int) -> Path:
        return self.root / self.files[i]


def class_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist", field="data_dir")
    dirs = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )
    if not dirs:
        raise DataError(f"{root} has no class sub-folders; put each class's images in one")
    if len(dirs) == 1:
        raise DataError(
            f"{root} has one class folder ({dirs[0].name}); a classifier needs two or more"
        )
    return dirs


def image_files(class_dir: Path) -> list[Path]:
    with os.scandir(class_dir) as entries:
        files = sorted(
            Path(e.path)
            for e in entries
            if e.is_file() and os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES
        )
    if not files:
        raise DataError(
            f"class folder {class_dir} has no images (.png, .jpg, .jpeg); add some or remove it"
        )
    return files


def index_folder(
    root: str | Path, *, seed: int, val_fraction: float, test_fraction: float
) -> FolderIndex:
    """List and split an image folder (the same split as `load_dataset('folder', ...)`)."""
    root = Path(root)
    files: list[str] = []
    labels: list[int] = []
    dirs = class_folders(root)
    for label, class_dir in enumerate(dirs):
        found = image_files(class_dir)
        files.extend(str(p.relative_to(root)) for p in found)
        labels.extend([label] * len(found))
    y = np.asarray(labels, dtype=np.int32)
    sizes = split_sizes(len(y), (val_fraction, test_fraction), "dataset 'folder'")
    val, test, train = stratified_parts(y, seed, sizes)
    names = tuple(p.name for p in dirs)
    return FolderIndex(root, tuple(files), y, names, train, val, test)


def decode(path: Path, size: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """uint8 (size, size, 3): the image resized, or (with `rng`, at 64 px and above) a
    random-resized crop, flipped half of the time. Raises DataError naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            box = None
            if rng is not None and size >= AUGMENT_MIN_SIZE:
                full = image.size
                box = crop_box(full, rng)
                image.draft("RGB", _draft_size(full, box, size))  # JPEG: decode smaller
                box = _scaled(box, full, image.size)
            rgb = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR, box=box)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read image {path} ({err}); fix or remove the file") from err
    out = np.asarray(rgb, dtype=np.uint8)
    if rng is not None and size >= AUGMENT_MIN_SIZE and rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def crop_box(wh: tuple[int, int], rng: np.random.Generator) -> tuple[float, float, float, float]:
    """torchvision's RandomResizedCrop box (left, top, right, bottom) for an image of `wh`:
    ten tries at a random area share and log-uniform aspect ratio, else the centre crop."""
    w, h = wh
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(*CROP_SCALE)
        ratio = math.exp(rng.uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))
        cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return (left, top, left + cw, top + ch)
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return (left, top, left + side, top + side)


def _draft_size(wh, box, size: int) -> tuple[int, int]:
    """The smallest full-image size JPEG draft mode may decode at so that the crop still has
    at least `size` pixels on each side."""
    bw, bh = box[2] - box[0], box[3] - box[1]
    scale = size / max(min(bw, bh), 1)
    return (max(1, math.ceil(wh[0] * scale)), max(1, math.ceil(wh[1] * scale)))


def _scaled(box, full_wh, decoded_wh) -> tuple[float, float, float, float]:
    """`box` (in the coordinates of the full image) in those of the image as decoded."""
    sx, sy = decoded_wh[0] / full_wh[0], decoded_wh[1] / full_wh[1]
    return (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
