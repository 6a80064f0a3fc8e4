"""A CIFAR-10-shaped stand-in for machines without CIFAR-10: 32x32 RGB images of 10 classes.

    python bench/synthetic_cifar.py OUT.npz [--per-image 2] [--seed 0]

Each of scikit-learn's 1,797 8x8 digits is drawn `--per-image` times at 32 px: upsampled
(bilinear) to a random size of 20-30 px, placed at a random offset, on a random dark colour
with a random bright stroke, plus Gaussian noise. The classes are the digits, so the
task is learnable but not trivial at this size; `hwnas train --dataset npz --data-dir OUT.npz
--space cifar` trains on it as on any user's .npz (`x` uint8 N x 32 x 32 x 3, `y`, and
`class_names`).
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

SIZE = 32


def draw(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    side = int(rng.integers(20, 31))
    img = Image.fromarray((digit / 16.0 * 255).astype(np.uint8)).resize((side, side), 2)
    ink = np.zeros((SIZE, SIZE), np.float32)
    top, left = rng.integers(0, SIZE - side + 1, size=2)
    ink[top : top + side, left : left + side] = np.asarray(img, np.float32) / 255.0
    back, stroke = rng.uniform(0, 90, size=3), rng.uniform(160, 255, size=3)
    rgb = back + ink[..., None] * (stroke - back)
    rgb += rng.normal(0, 8, size=rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--per-image", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    digits = load_digits()
    rng = np.random.default_rng(args.seed)
    x = np.stack([draw(d, rng) for d in digits.images for _ in range(args.per_image)])
    y = np.repeat(digits.target, args.per_image).astype(np.int64)
    names = np.asarray([str(i) for i in range(10)])
    np.savez_compressed(args.out, x=x, y=y, class_names=names)
    print(f"{args.out}: {len(x)} images {x.shape[1:]}, {len(names)} classes")


if __name__ == "__main__":
    main()
