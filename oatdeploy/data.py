"""Datasets as in-memory float tensors in [0, 1], NCHW.

Everything here reads local files only: nothing is downloaded at run time. The datasets are small
enough (at most 60k images) that holding them in memory is simpler and faster than a DataLoader.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from oatdeploy.errors import DatasetMissing, OatError

FMNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR10_FILES = {
    "train": [f"data_batch_{i}" for i in range(1, 6)],
    "test": ["test_batch"],
}
EMBEDDED = "fmnist_mini.npz"
# L∞ radius used for training and evaluation when --eps is not given (the paper's presets).
DEFAULT_EPS = {"fmnist-mini": 0.1, "fashion-mnist": 0.1, "cifar10": 8 / 255}
DATASETS = tuple(DEFAULT_EPS)


@dataclass
class ArrayDataset:
    """Images (N, C, H, W) float32 in [0, 1] and int64 labels."""

    name: str
    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    eps: float
    flip: bool

    def __len__(self) -> int:
        return len(self.y)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x.shape[1:])

    def augment(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random crop with 2 px zero padding (4 px for 32×32) and, for natural images, horizontal flip."""
        n, _, h, w = x.shape
        pad = 4 if h >= 32 else 2
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
        with open(folder / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")  # the format's own encoding; files are local
        xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(batch[b"labels"], dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def load_embedded(split: str) -> tuple[np.ndarray, np.ndarray]:
    raw = resources.files("oatdeploy.assets").joinpath(EMBEDDED).read_bytes()
    with np.load(io.BytesIO(raw)) as npz:
        return npz[f"x_{split}"][:, None], npz[f"y_{split}"]


def load_dataset(name: str, data_dir: str | Path | None = None, split: str = "train",
                 limit: int | None = None) -> ArrayDataset:
    """Load a dataset split; ``limit`` keeps the first ``limit`` samples (for smoke runs)."""
    if name not in DATASETS:
        raise OatError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if split not in ("train", "test"):
        raise OatError(f"split must be 'train' or 'test', got {split!r}")
    if name == "fmnist-mini":
        x, y = load_embedded(split)
    elif name == "fashion-mnist":
        x, y = load_fashion_mnist(Path(data_dir) if data_dir else None, split)
    else:
        x, y = load_cifar10(Path(data_dir) if data_dir else None, split)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    images = torch.tensor(np.asarray(x), dtype=torch.float32).div_(255)
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    return ArrayDataset(name=name, x=images, y=labels, num_classes=10, eps=DEFAULT_EPS[name],
                        flip=name == "cifar10")
