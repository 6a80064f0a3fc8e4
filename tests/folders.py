"""Generated image folders for the loader tests (real JPEG and PNG files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def make_folder(root: Path, classes: int = 3, per_class: int = 30, size=(80, 96)) -> Path:
    """`classes` class folders of `per_class` JPEGs each, the class visible in one channel."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            a = (rng.random((size[0], size[1], 3)) * 120).astype(np.uint8)
            a[..., c % 3] += 120
            Image.fromarray(a).save(d / f"{i:04d}.jpg", quality=90)
    return root
