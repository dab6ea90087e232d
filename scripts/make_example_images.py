"""Write examples/images/: a few Fashion-MNIST test images as the files `oatdeploy predict` reads.

Run from the repo root: `python scripts/make_example_images.py`. It takes the first test image of
four classes from the embedded fmnist-mini set (so it needs no download and gives the same bytes every
time): three 28×28 grayscale PNGs as the dataset has them, and one enlarged RGB JPEG, to show that
`predict` converts and resizes what it is given. The class is in each file name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from oatdeploy.runtime.labels import FASHION_MNIST

OUT = Path("examples/images")
CLASSES = {9: "png", 1: "png", 7: "png", 6: "jpg"}  # ankle boot, trouser, sneaker; a shirt as a photo-like JPEG


def main() -> None:
    from importlib import resources

    with resources.files("oatdeploy.assets").joinpath("fmnist_mini.npz").open("rb") as f, np.load(f) as npz:
        x, y = npz["x_test"], npz["y_test"]
    OUT.mkdir(parents=True, exist_ok=True)
    for label, kind in CLASSES.items():
        img = Image.fromarray(x[np.flatnonzero(y == label)[0]])
        name = FASHION_MNIST[label].lower().replace("/", "-").replace(" ", "-")
        if kind == "png":
            img.save(OUT / f"{name}.png", optimize=True)
        else:
            img.convert("RGB").resize((112, 112), Image.Resampling.BICUBIC).save(OUT / f"{name}.jpg", quality=90)


if __name__ == "__main__":
    main()
