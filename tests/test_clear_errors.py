"""Damaged checkpoints and wrong inputs to `sn.predict` give one full, clear line, never a library's raw message."""

from __future__ import annotations

import collections
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import oatdeploy
from tests.conftest import oatdeploy_cli


class Foreign:
    """Any class of someone else's: `weights_only` loading refuses to unpickle it."""


def damaged_checkpoints(good: Path, folder: Path) -> dict[str, Path]:
    """The ways a supernet.pt arrives broken: cut short by a copy, random bytes, empty, a foreign pickle."""
    data = good.read_bytes()
    files = {"truncated": data[: len(data) // 2], "random": os.urandom(4096), "empty": b"",
             "pickle": pickle.dumps(collections.OrderedDict(a=1), protocol=4)}
    for name, content in files.items():
        (folder / f"{name}.pt").write_bytes(content)
    return {name: folder / f"{name}.pt" for name in files}


@pytest.mark.parametrize("kind", ["truncated", "random", "empty", "pickle"])
def test_a_damaged_checkpoint_gives_one_full_line(kind: str, tiny_ckpt: Path, tmp_path: Path) -> None:
    path = damaged_checkpoints(tiny_ckpt, tmp_path)[kind]
    result = oatdeploy_cli("eval", str(path), "--limit", "4", "--pgd-steps", "1")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # no torch warning before it
    line = lines[0]
    assert line.startswith(f"error: {path} is not a readable oatdeploy checkpoint: ")
    assert line.endswith("point to the supernet.pt that `oatdeploy train` wrote, or copy it again"), line
    for raw in ("weights_only", "miniz", "PytorchStreamReader", "EOFError", "UnpicklingError"):
        assert raw not in line, line  # torch's wording (and its advice to load unsafely) stays out


def test_each_damage_is_named(tiny_ckpt: Path, tmp_path: Path) -> None:
    from oatdeploy.checkpoint import read_checkpoint
    from oatdeploy.runtime.errors import ArtifactError

    reasons = {"truncated": "not a PyTorch zip archive", "random": "not a PyTorch zip archive",
               "empty": "the file is empty", "pickle": "not a PyTorch zip archive"}
    for kind, path in damaged_checkpoints(tiny_ckpt, tmp_path).items():
        with pytest.raises(ArtifactError, match=reasons[kind]):
            read_checkpoint(path)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2), "extra": Foreign()}, foreign)
    with pytest.raises(ArtifactError, match="Python objects other than tensors"):
        read_checkpoint(foreign)


def test_weights_that_do_not_fit_the_config_are_one_line(tiny_ckpt: Path, tmp_path: Path) -> None:
    from oatdeploy.checkpoint import load_supernet
    from oatdeploy.runtime.errors import ArtifactError

    payload = torch.load(tiny_ckpt, weights_only=True)
    payload["model"].popitem()
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    with pytest.raises(ArtifactError, match="do not fit the resnet20") as info:
        load_supernet(bad)
    assert "\n" not in str(info.value)


def test_predict_takes_numpy_and_returns_a_tensor(tiny_ckpt: Path) -> None:
    sn = oatdeploy.load_checkpoint(tiny_ckpt)
    x = np.random.default_rng(0).random((3, *sn.input_shape))  # float64, as numpy makes it
    logits = sn.predict(x, lam=0.4, width=0.5)
    assert isinstance(logits, torch.Tensor) and logits.shape == (3, sn.num_classes)
    assert torch.equal(logits, sn.predict(torch.from_numpy(x).float(), lam=0.4, width=0.5))


@pytest.mark.parametrize(("shape", "needle"), [
    ((1, 28, 28), "add a batch axis"),
    ((2, 3, 28, 28), "[N, C, H, W] = [N, 1, 28, 28]"),
    ((2, 1, 32, 32), "[N, C, H, W] = [N, 1, 28, 28]"),
    ((2, 784), "[N, C, H, W] = [N, 1, 28, 28]"),
])
def test_predict_names_the_shape_it_needs(tiny_ckpt: Path, shape: tuple[int, ...], needle: str) -> None:
    sn = oatdeploy.load_checkpoint(tiny_ckpt)
    for x in (np.zeros(shape, np.float32), torch.zeros(shape)):
        with pytest.raises(ValueError, match="x has shape") as info:
            sn.predict(x, lam=0.4, width=0.5)
        assert needle in str(info.value)


def test_predict_refuses_integer_pixels_with_the_fix(tiny_ckpt: Path) -> None:
    sn = oatdeploy.load_checkpoint(tiny_ckpt)
    with pytest.raises(ValueError, match=r"uint8 pixels: x / 255"):
        sn.predict(np.zeros((1, 1, 28, 28), np.uint8), lam=0.4, width=0.5)
    with pytest.raises(ValueError, match=r"x.float\(\) / 255"):
        sn.predict(torch.zeros((1, 1, 28, 28), dtype=torch.uint8), lam=0.4, width=0.5)


def forged(good: Path, out: Path, edit) -> Path:
    """`good` with its payload edited as a hand (or an attacker) could: still loadable with weights_only."""
    import json

    payload = torch.load(good, map_location="cpu", weights_only=True)
    config = json.loads(payload["config_json"])
    edit(payload, config)
    payload["config_json"] = json.dumps(config)
    torch.save(payload, out)
    return out


@pytest.mark.parametrize(("edit", "says"), [
    (lambda p, c: c.update(widths="abc"), "config widths='abc'"),
    (lambda p, c: c.update(input_shape=[1, 28]), "config input_shape=[1, 28]"),
    (lambda p, c: p.update(encoding=torch.zeros(2, 5)), "λ encoding is (2, 5)"),
    (lambda p, c: p.update(model=torch.zeros(3)), "its model is a Tensor"),
])
def test_a_forged_checkpoint_config_is_one_line(tiny_ckpt: Path, tmp_path: Path, edit, says: str) -> None:
    path = forged(tiny_ckpt, tmp_path / "supernet.pt", edit)
    result = oatdeploy_cli("eval", str(path), "--limit", "4", "--pgd-steps", "1")
    assert result.returncode == 2 and says in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_train_out_under_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    result = oatdeploy_cli("train", "--out", str(tmp_path / "file" / "run"), "--max-steps", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "not a folder" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_export_force_on_a_full_disk_keeps_the_deployment(tiny_ckpt: Path, tmp_path: Path) -> None:
    import shutil
    import subprocess

    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        args = ("export", str(tiny_ckpt), "--out", str(mnt / "d"), "--verify-samples", "4", "--calib-samples", "4",
                "--quiet")
        assert oatdeploy_cli(*args).returncode == 0
        before = {p: p.read_bytes() for p in (mnt / "d").rglob("*") if p.is_file()}
        free = shutil.disk_usage(mnt).free
        (mnt / "filler").write_bytes(b"\0" * max(0, free - 200_000))  # room for a part of a new export only
        result = oatdeploy_cli(*args, "--force")
        assert result.returncode == 2 and "no space left on the device" in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert {p: p.read_bytes() for p in (mnt / "d").rglob("*") if p.is_file()} == before
        assert [p.name for p in mnt.iterdir() if p.name.startswith(".")] == []
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_a_checkpoint_write_on_a_full_disk_is_one_error_and_keeps_the_old_one(tiny_ckpt: Path,
                                                                              tmp_path: Path) -> None:
    """torch reports a failed write as RuntimeError (inline_container); the trainer's save says what happened."""
    import shutil
    import subprocess

    from oatdeploy.checkpoint import save_checkpoint
    from oatdeploy.runtime.errors import ArtifactError

    sn = oatdeploy.load_checkpoint(tiny_ckpt)
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        shutil.copy(tiny_ckpt, mnt / "supernet.pt")
        before = (mnt / "supernet.pt").read_bytes()
        (mnt / "filler").write_bytes(b"\0" * max(0, shutil.disk_usage(mnt).free - 100_000))
        with pytest.raises(ArtifactError, match="is the disk full"):  # torch: "enforce fail at inline_container"
            save_checkpoint(mnt / "supernet.pt", sn.model, sn.config, sn.encoding)
        assert (mnt / "supernet.pt").read_bytes() == before
        assert [p.name for p in mnt.iterdir() if p.name.startswith(".")] == []
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)
