"""Build oatdeploy/assets/fmnist_mini.npz: a class-balanced Fashion-MNIST subset shipped in the package.

Run once from the repo root after `apt-get install dataset-fashion-mnist`:

    python scripts/make_fmnist_mini.py [--src /usr/share/datasets/fashion-mnist]

It takes the first N images of each class (in file order) so the subset is reproducible byte for byte.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from oatdeploy.data import FMNIST_DEBIAN_DIR, load_fashion_mnist


def first_per_class(x: np.ndarray, y: np.ndarray, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    keep = np.sort(np.concatenate([np.flatnonzero(y == c)[:per_class] for c in range(10)]))
    return x[keep, 0], y[keep].astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=FMNIST_DEBIAN_DIR)
    parser.add_argument("--train-per-class", type=int, default=500)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("oatdeploy/assets/fmnist_mini.npz"))
    args = parser.parse_args()
    x_train, y_train = first_per_class(*load_fashion_mnist(args.src, "train"), args.train_per_class)
    x_test, y_test = first_per_class(*load_fashion_mnist(args.src, "test"), args.test_per_class)
    np.savez_compressed(args.out, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB): "
          f"{len(y_train)} train, {len(y_test)} test images")


if __name__ == "__main__":
    main()
