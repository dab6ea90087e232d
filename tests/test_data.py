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
from oatdeploy.runtime.errors import DatasetMissing, OatError


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


def write_svhn(folder: Path, name: str, images: np.ndarray, digits: np.ndarray) -> None:
    """The cropped-digits format: X [32, 32, 3, N] uint8, y [N, 1] uint8 with 10 standing for the digit 0."""
    from scipy.io import savemat

    labels = np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]
    savemat(folder / name, {"X": np.transpose(images, (2, 3, 1, 0)), "y": labels})


def test_svhn_mat_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (6, 3, 32, 32), dtype=np.uint8)  # N, C, H, W
    digits = np.array([0, 1, 9, 0, 5, 3])
    write_svhn(tmp_path, "test_32x32.mat", images, digits)
    data = load_dataset("svhn", data_dir=tmp_path, split="test")
    assert data.x.shape == (6, 3, 32, 32) and data.y.tolist() == digits.tolist()
    assert torch.equal(data.x[2], torch.from_numpy(images[2]).float() / 255)
    assert abs(data.eps - 8 / 255) < 1e-12 and not data.flip and data.crop_pad == 0
    with pytest.raises(DatasetMissing, match=r"train_32x32\.mat.*housenumbers"):
        load_dataset("svhn", data_dir=tmp_path, split="train")
    (tmp_path / "train_32x32.mat").write_bytes(b"not a mat file")
    with pytest.raises(OatError, match=r"not an SVHN \.mat file"):
        load_dataset("svhn", data_dir=tmp_path, split="train")


def write_stl10(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    """The binary format: each image's channels stored column-major (W before H), labels 1–10 as uint8."""
    images.transpose(0, 1, 3, 2).tofile(folder / f"{prefix}_X.bin")
    (labels + 1).astype(np.uint8).tofile(folder / f"{prefix}_y.bin")


def test_stl10_binary_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (3, 3, 96, 96), dtype=np.uint8)
    labels = np.array([0, 9, 4])
    write_stl10(tmp_path, "train", images, labels)
    data = load_dataset("stl10", data_dir=tmp_path, split="train")
    assert data.x.shape == (3, 3, 96, 96) and data.y.tolist() == [0, 9, 4]
    assert torch.equal(data.x[1], torch.from_numpy(images[1]).float() / 255)  # rows are rows, not columns
    assert abs(data.eps - 8 / 255) < 1e-12 and data.flip and data.crop_pad == 4
    assert data.augment(data.x, torch.Generator().manual_seed(0)).shape == (3, 3, 96, 96)
    with pytest.raises(DatasetMissing, match=r"test_X\.bin, test_y\.bin.*stl10_binary"):
        load_dataset("stl10", data_dir=tmp_path, split="test")
    (tmp_path / "train_y.bin").write_bytes(bytes([1, 2]))
    with pytest.raises(OatError, match=r"3 images of 3×96×96 and train_y\.bin 2 labels"):
        load_dataset("stl10", data_dir=tmp_path, split="train")
    with pytest.raises(OatError, match="no validation split"):
        load_dataset("stl10", data_dir=tmp_path, split="val")


def test_val_split_holds_out_the_last_5000_training_images(tmp_path: Path) -> None:
    """The reference trains CIFAR-10 on images 0–44,999 and validates on 45,000–49,999 (here: 6,000 images)."""
    labels = np.arange(6_000) % 10
    for i in range(5):
        batch = {b"data": np.full((1_200, 3072), i, dtype=np.uint8), b"labels": list(labels[i * 1_200:(i + 1) * 1_200])}
        (tmp_path / f"data_batch_{i + 1}").write_bytes(pickle.dumps(batch))
    train = load_dataset("cifar10", data_dir=tmp_path, split="train", val_split=True)
    val = load_dataset("cifar10", data_dir=tmp_path, split="val")
    assert len(train) == 1_000 and len(val) == 5_000
    assert round(float(train.x[-1].max()) * 255) == 0 and round(float(val.x[0].max()) * 255) == 0
    assert round(float(val.x[-1].max()) * 255) == 4 and val.y[:3].tolist() == [0, 1, 2]
    assert len(load_dataset("cifar10", data_dir=tmp_path, split="train")) == 6_000
    with pytest.raises(OatError, match="no validation split"):
        load_dataset("fmnist-mini", split="val")


def python2_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch as CIFAR-10's own files are: Python 2 cPickle, protocol 2, str keys, a numpy uint8 array."""
    def short(s: bytes) -> bytes:
        return b"U" + bytes([len(s)]) + s

    raw = data.tobytes()
    array = (b"cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\nndarray\nq\x03K\x00\x85" + short(b"b") + b"\x87R"
             + b"q\x04(K\x01" + b"M" + struct.pack("<H", data.shape[0]) + b"M" + struct.pack("<H", data.shape[1])
             + b"\x86cnumpy\ndtype\nq\x05" + short(b"u1") + b"K\x00K\x01\x87Rq\x06(K\x03" + short(b"|")
             + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x07b\x89T" + struct.pack("<I", len(raw)) + raw
             + b"tq\x08b")
    labels_part = b"]q\x0a(" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    return (b"\x80\x02}q\x00(" + short(b"batch_label") + short(b"training batch 1 of 5") + short(b"data") + b"q\x01"
            + array + short(b"labels") + b"q\x09" + labels_part + b"u.")


def test_cifar10_batch_in_the_original_python2_format_is_read_without_pickle(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    data, labels = rng.integers(0, 256, (3, 3072), dtype=np.uint8), [3, 7, 0]
    stream = python2_batch(data, labels)
    trusted = pickle.loads(stream, encoding="bytes")  # the test's own bytes: checks they are the real format
    assert np.array_equal(trusted[b"data"], data) and trusted[b"labels"] == labels
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (tmp_path / name).write_bytes(stream)
    test = load_dataset("cifar10", data_dir=tmp_path, split="test")
    assert torch.equal(test.x[2], torch.from_numpy(data[2].reshape(3, 32, 32)).float() / 255)
    assert test.y.tolist() == labels


@pytest.mark.parametrize("protocol", range(6))
def test_cifar10_batch_of_any_protocol_is_read(tmp_path: Path, protocol: int) -> None:
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    batch = {b"batch_label": b"x", b"labels": [1, 9], b"data": data, b"filenames": [b"a.png", b"b.png"]}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(batch, protocol=protocol))
    test = load_dataset("cifar10", data_dir=tmp_path, split="test")
    assert test.y.tolist() == [1, 9] and torch.equal(test.x[1].flatten() * 255, torch.from_numpy(data[1]).float())


class RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


class Subclassed(np.ndarray):
    pass


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_cifar10_batch_that_would_run_code_is_refused_and_runs_nothing(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "marker"
    evil = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [RunsCode(marker)]}
    (tmp_path / "test_batch").write_bytes(pickle.dumps(evil, protocol=protocol))
    with pytest.raises(OatError, match=r"(__builtin__|builtins)\.exec.*nothing in it was run"):
        load_dataset("cifar10", data_dir=tmp_path, split="test")
    assert not marker.exists()
    pickle.loads((tmp_path / "test_batch").read_bytes())  # the file does run code under pickle
    assert marker.exists()


@pytest.mark.parametrize("payload", [
    {b"data": np.zeros((1, 3072), object), b"labels": [0]},
    {b"data": np.zeros((1, 3072), np.uint8).view(Subclassed), b"labels": [0]},
    {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0], b"x": {1, 2}},
    {b"data": np.zeros((1, 3072), np.float32), b"labels": [0]},
    {b"data": np.zeros((1, 3072), np.uint8), b"labels": [12]},
])
def test_cifar10_batch_with_anything_but_plain_data_is_refused(tmp_path: Path, payload: dict) -> None:
    (tmp_path / "test_batch").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(OatError, match="test_batch"):
        load_dataset("cifar10", data_dir=tmp_path, split="test")


def test_a_data_folder_from_the_run_config_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    from oatdeploy.data import data_dir_for

    assert data_dir_for("/typed", {"data_dir": "/stored"}) == "/typed"
    assert capsys.readouterr().err == ""
    assert data_dir_for(None, {"dataset": "cifar10", "data_dir": "/stored"}) == "/stored"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cifar10 from /stored (the run's data_dir; pass --data-dir" in err
