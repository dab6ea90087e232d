"""Dataset loaders on small files written here in the real formats, and the embedded subset."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from oatdeploy.data import load_dataset, read_idx
from oatdeploy.errors import DatasetMissing, OatError


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    raw = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    if compress:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)


@pytest.mark.parametrize("compress", [False, True])
def test_fashion_mnist_idx_files(tmp_path: Path, compress: bool) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 7, dtype=np.uint8)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images, compress)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels, compress)
    data = load_dataset("fashion-mnist", data_dir=tmp_path, split="test")
    assert data.x.shape == (7, 1, 28, 28) and data.x.dtype == torch.float32
    assert torch.equal(data.x[3, 0], torch.from_numpy(images[3]).float() / 255)
    assert data.y.tolist() == labels.tolist() and data.eps == 0.1


def test_missing_files_are_named_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DatasetMissing, match=r"train-images-idx3-ubyte.*apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", data_dir=tmp_path)
    with pytest.raises(DatasetMissing, match=r"data_batch_1.*cifar-10-python"):
        load_dataset("cifar10", data_dir=tmp_path)
    with pytest.raises(DatasetMissing, match="--data-dir"):
        load_dataset("cifar10")
    with pytest.raises(OatError, match="fmnist-mini"):
        load_dataset("imagenet")


def test_truncated_idx_file_is_reported(tmp_path: Path) -> None:
    write_idx(tmp_path / "x", np.zeros((4, 3, 3), np.uint8), compress=False)
    (tmp_path / "x").write_bytes((tmp_path / "x").read_bytes()[:-5])
    with pytest.raises(OatError, match="truncated"):
        read_idx(tmp_path / "x")


def test_cifar10_python_batches(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, 4))}
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    train = load_dataset("cifar10", data_dir=tmp_path, split="train")
    assert train.x.shape == (20, 3, 32, 32) and train.num_classes == 10 and abs(train.eps - 8 / 255) < 1e-9
    first = pickle.loads((tmp_path / "data_batch_1").read_bytes())[b"data"][0]
    assert torch.equal(train.x[0], torch.from_numpy(first.reshape(3, 32, 32)).float() / 255)
    assert load_dataset("cifar10", data_dir=tmp_path, split="test", limit=3).x.shape == (3, 3, 32, 32)


def test_embedded_subset_is_class_balanced_and_augment_keeps_shapes() -> None:
    train, test = load_dataset("fmnist-mini"), load_dataset("fmnist-mini", split="test")
    assert len(set(torch.bincount(train.y).tolist())) == 1 and len(set(torch.bincount(test.y).tolist())) == 1
    assert float(train.x.min()) >= 0.0 and float(train.x.max()) <= 1.0
    out = train.augment(train.x[:16], torch.Generator().manual_seed(0))
    assert out.shape == (16, 1, 28, 28) and not torch.equal(out, train.x[:16])
    centered = train.x[:16]
    assert torch.isclose(out.sum(), centered.sum(), rtol=0.2)  # a shift, not a rescale
