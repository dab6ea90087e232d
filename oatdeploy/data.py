"""Datasets as in-memory float tensors in [0, 1], NCHW.

Everything here reads local files only: nothing is downloaded at run time. The datasets are small
enough (at most 60k images) that holding them in memory is simpler and faster than a DataLoader.
"""

from __future__ import annotations

import gzip
import io
import struct
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from oatdeploy.pickle_data import load_data_pickle
from oatdeploy.runtime.errors import DatasetMissing, OatError

FMNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR10_FILES = {
    "train": [f"data_batch_{i}" for i in range(1, 6)],
    "test": ["test_batch"],
}
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
STL10_FILES = {"train": ("train_X.bin", "train_y.bin"), "test": ("test_X.bin", "test_y.bin")}
STL10_SHAPE = (3, 96, 96)
EMBEDDED = "fmnist_mini.npz"
# L∞ radius used for training and evaluation when --eps is not given. The paper's code trains and
# evaluates all three of its datasets at 8/255 (OAT.py's one --eps default).
DEFAULT_EPS = {"fmnist-mini": 0.1, "fashion-mnist": 0.1, "cifar10": 8 / 255, "svhn": 8 / 255, "stl10": 8 / 255}
DATASETS = tuple(DEFAULT_EPS)
# Training augmentation as the paper's code has it: zero padding for the random crop, horizontal flip.
# SVHN is not augmented (digits must not be flipped, and the reference does not crop them either).
CROP_PAD = {"fmnist-mini": 2, "fashion-mnist": 2, "cifar10": 4, "svhn": 0, "stl10": 4}
FLIP = {"cifar10", "stl10"}
# The reference code's validation split: the last 5,000 training images are held out (CIFAR-10:
# 45,000 train / 5,000 val; SVHN: 68,257 / 5,000). STL-10 has none there.
VAL_HOLDOUT = {"cifar10": 5000, "svhn": 5000}
SPLITS = ("train", "val", "test")


@dataclass
class ArrayDataset:
    """Images (N, C, H, W) float32 in [0, 1] and int64 labels."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    eps: float
    flip: bool
    crop_pad: int = 0

    def __len__(self) -> int:
        return len(self.y)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape[1:])

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random crop with `crop_pad` px of zero padding and, for natural images, horizontal flip."""
        n, _, h, w = x.shape
        pad = self.crop_pad
        out = x
        if pad:
            padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
            dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
            dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
            rows = (dy[:, None] + torch.arange(h))[:, None, :, None].expand(n, x.shape[1], h, w + 2 * pad)
            out = padded.gather(2, rows)
            cols = (dx[:, None] + torch.arange(w))[:, None, None, :].expand(n, x.shape[1], h, w)
            out = out.gather(3, cols)
        if self.flip:
            flip = torch.rand(n, generator=generator) < 0.5
            out = torch.where(flip[:, None, None, None], out.flip(3), out)
        return out


def _open_maybe_gz(path: Path) -> bytes:
    if path.is_file():
        return path.read_bytes()
    gz = path.with_name(path.name + ".gz")
    return gzip.decompress(gz.read_bytes())


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (plain or .gz), the format of MNIST and Fashion-MNIST."""
    raw = _open_maybe_gz(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise OatError(f"{path}: not an unsigned-byte IDX file; use the original Fashion-MNIST files")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise OatError(f"{path}: truncated IDX file ({data.size} of {int(np.prod(dims))} bytes); "
                       "re-copy the original file")
    return data.reshape(dims)


def _require(folder: Path, names: list[str], how: str) -> None:
    missing = [n for n in names if not (folder / n).is_file() and not (folder / f"{n}.gz").is_file()]
    if missing:
        raise DatasetMissing(f"missing {', '.join(missing)} (or .gz) in {folder}; {how}")


def load_fashion_mnist(data_dir: Path | None, split: str) -> tuple[np.ndarray, np.ndarray]:
    folder = Path(data_dir) if data_dir else FMNIST_DEBIAN_DIR
    images, labels = FMNIST_FILES[split]
    _require(folder, [images, labels], "install them with `apt-get install dataset-fashion-mnist` "
             "or pass --data-dir with the IDX files from github.com/zalandoresearch/fashion-mnist")
    x = read_idx(folder / images)
    y = read_idx(folder / labels)
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise OatError(f"{folder}: images {x.shape} and labels {y.shape} do not match; re-copy the IDX files")
    return x[:, None], y


def load_cifar10(data_dir: Path | None, split: str) -> tuple[np.ndarray, np.ndarray]:
    if data_dir is None:
        raise DatasetMissing("cifar10 needs --data-dir pointing at the extracted cifar-10-batches-py folder")
    folder = Path(data_dir)
    names = CIFAR10_FILES[split]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DatasetMissing(f"missing {', '.join(missing)} in {folder}; extract cifar-10-python.tar.gz from "
                             "https://www.cs.toronto.edu/~kriz/cifar.html and pass its cifar-10-batches-py folder")
    xs, ys = [], []
    for name in names:
        x, y = read_cifar10_batch(folder / name)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def read_cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One python batch ({b"data": uint8 [N, 3072], b"labels": [N ints], ...}), parsed without running anything."""
    batch = load_data_pickle(path)
    data = batch.get(b"data") if isinstance(batch, dict) else None
    labels = batch.get(b"labels") if isinstance(batch, dict) else None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise OatError(f"{path}: no uint8 b'data' array of [N, 3072] images; use the original cifar-10-batches-py "
                       "files")
    if not isinstance(labels, list) or len(labels) != len(data) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 10 for v in labels):
        raise OatError(f"{path}: b'labels' is not a list of {len(data)} classes 0–9; use the original "
                       "cifar-10-batches-py files")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def data_dir_for(typed: str | Path | None, config: dict) -> str | Path | None:
    """The data folder: the one the user typed, else the run's (saying so, since nobody typed it here)."""
    if typed:
        return typed
    stored = config.get("data_dir")
    if stored:
        print(f"reading {config.get('dataset', 'the dataset')} from {stored} (the run's data_dir; pass --data-dir "
              "to use another folder)", file=sys.stderr)
    return stored


def load_svhn(data_dir: Path | None, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The cropped-digits .mat files (MATLAB v5): X is [32, 32, 3, N], y is [N, 1] with 10 for the digit 0."""
    if data_dir is None:
        raise DatasetMissing("svhn needs --data-dir pointing at the folder with train_32x32.mat and test_32x32.mat")
    path = Path(data_dir) / SVHN_FILES[split]
    if not path.is_file():
        raise DatasetMissing(f"missing {path.name} in {data_dir}; download train_32x32.mat and test_32x32.mat "
                             "from http://ufldl.stanford.edu/housenumbers/ into that folder")
    try:
        from scipy.io import loadmat
        from scipy.io.matlab import MatReadError
    except ImportError:
        raise OatError("reading SVHN's .mat files needs scipy: pip install 'oatdeploy[train]'") from None
    try:
        mat = loadmat(path, variable_names=["X", "y"])
        x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    except (MatReadError, ValueError, KeyError, TypeError, OSError) as e:
        raise OatError(f"{path} is not an SVHN .mat file ({e}); re-download it") from None
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise OatError(f"{path}: X {x.shape} {x.dtype} and y {y.shape} are not SVHN's [32, 32, 3, N] uint8 and "
                       "[N, 1]; re-download it")
    return np.transpose(x, (3, 2, 0, 1)), np.where(y == 10, 0, y).astype(np.int64)


def load_stl10(data_dir: Path | None, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The binary files: uint8 images stored column-major per channel ([N, 3, 96, 96] transposed), labels 1–10."""
    if data_dir is None:
        raise DatasetMissing("stl10 needs --data-dir pointing at the extracted stl10_binary folder")
    folder = Path(data_dir)
    images, labels = STL10_FILES[split]
    missing = [n for n in (images, labels) if not (folder / n).is_file()]
    if missing:
        raise DatasetMissing(f"missing {', '.join(missing)} in {folder}; extract stl10_binary.tar.gz from "
                             "https://cs.stanford.edu/~acoates/stl10/ and pass its stl10_binary folder")
    raw = np.fromfile(folder / images, dtype=np.uint8)
    y = np.fromfile(folder / labels, dtype=np.uint8).astype(np.int64)
    per_image = int(np.prod(STL10_SHAPE))
    if raw.size % per_image or raw.size // per_image != len(y):
        raise OatError(f"{folder}: {images} holds {raw.size / per_image:g} images of 3×96×96 and {labels} "
                       f"{len(y)} labels; re-extract stl10_binary.tar.gz")
    if len(y) and (y.min() < 1 or y.max() > 10):
        raise OatError(f"{folder / labels}: labels must be 1–10, found {y.min()}–{y.max()}; re-extract it")
    x = raw.reshape(-1, *STL10_SHAPE).transpose(0, 1, 3, 2)
    return x, y - 1


def load_embedded(split: str) -> tuple[np.ndarray, np.ndarray]:
    raw = resources.files("oatdeploy.assets").joinpath(EMBEDDED).read_bytes()
    with np.load(io.BytesIO(raw)) as npz:
        return npz[f"x_{split}"][:, None], npz[f"y_{split}"]


def split_note(name: str, split: str, val_split: bool) -> str:
    """What a split holds, in words, for eval.json."""
    if split == "val":
        return f"the last {VAL_HOLDOUT[name]:,} training images (the reference code's validation split)"
    if split == "train" and val_split:
        return f"the training images less the last {VAL_HOLDOUT[name]:,} (the reference code's training split)"
    return f"the {split} set"


def load_dataset(name: str, data_dir: str | Path | None = None, split: str = "train",
                 limit: int | None = None, val_split: bool = False) -> ArrayDataset:
    """Load a dataset split; ``limit`` keeps the first ``limit`` samples (for smoke runs).

    ``split="val"`` is the reference code's held-out validation set (the last 5,000 training images);
    ``val_split=True`` leaves those out of ``split="train"``, so training and validation do not overlap.
    """
    if name not in DATASETS:
        raise OatError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise OatError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    holdout = split == "val" or (split == "train" and val_split)
    if holdout and name not in VAL_HOLDOUT:
        raise OatError(f"{name} has no validation split in the paper's code (only {', '.join(VAL_HOLDOUT)} "
                       "have one); drop --val-split")
    folder = Path(data_dir) if data_dir else None
    source = "test" if split == "test" else "train"
    if name == "fmnist-mini":
        x, y = load_embedded(source)
    elif name == "fashion-mnist":
        x, y = load_fashion_mnist(folder, source)
    elif name == "cifar10":
        x, y = load_cifar10(folder, source)
    elif name == "svhn":
        x, y = load_svhn(folder, source)
    else:
        x, y = load_stl10(folder, source)
    if holdout:
        held = VAL_HOLDOUT[name]
        if len(y) <= held:
            raise OatError(f"{name} training set has {len(y)} images, not more than the {held:,} held out for "
                           "validation; use the full training files or drop --val-split")
        x, y = (x[-held:], y[-held:]) if split == "val" else (x[:-held], y[:-held])
    if limit is not None:
        x, y = x[:limit], y[:limit]
    images = torch.tensor(np.asarray(x), dtype=torch.float32).div_(255)
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    return ArrayDataset(name=name, x=images, y=labels, num_classes=10, eps=DEFAULT_EPS[name], flip=name in FLIP,
                        crop_pad=CROP_PAD[name])
