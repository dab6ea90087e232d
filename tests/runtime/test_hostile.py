"""Hostile or damaged deployments and inputs on the device: each is one line on stderr and exit 2, never a
traceback, and nothing good is replaced (#21 item 7). Disk-full and read-only cases mount a small tmpfs and
are skipped where this process may not mount (CI runners without root)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from tests.runtime.deploykit import edit_manifest, oatdeploy


def rehash(folder: Path, rel: str) -> Callable[[dict[str, Any]], None]:
    """An edit that records `rel`'s current sha256 and size wherever the manifest names it (a forged update)."""
    data = (folder / rel).read_bytes()

    def edit(m: Any) -> None:
        if isinstance(m, dict):
            if m.get("path") == rel or m.get("onnx") == rel:
                m["sha256"] = hashlib.sha256(data).hexdigest()
                if "size" in m:
                    m["size"] = len(data)
            for v in m.values():
                edit(v)
        elif isinstance(m, list):
            for v in m:
                edit(v)

    return edit


def one_line(result: subprocess.CompletedProcess, says: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and says in result.stderr, result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1, result.stderr


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that claims width × height pixels (Pillow refuses it at open, before decoding anything)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
                     + chunk(b"IEND", b""))


def small_png(path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)


def test_a_truncated_onnx_whose_hash_was_updated(folded: Path) -> None:
    onnx = sorted(folded.glob("*.onnx"))[0]
    onnx.write_bytes(onnx.read_bytes()[:200])
    edit_manifest(folded, rehash(folded, onnx.name))
    one_line(oatdeploy("profile", str(folded)), "is not a loadable ONNX model")


def test_a_garbage_clean_npz_whose_hash_was_updated(folded: Path) -> None:
    (folded / "verify" / "clean.npz").write_bytes(b"PK\x03\x04" + os.urandom(300))
    edit_manifest(folded, rehash(folded, "verify/clean.npz"))
    one_line(oatdeploy("profile", str(folded)), "is not a readable .npz")


def test_calibration_data_full_of_nan(folded: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "nan.npz", x=np.full((4, 1, 8, 8), np.nan, np.float32))
    one_line(oatdeploy("quantize", str(folded), "--calib-data", str(tmp_path / "nan.npz")), "NaN or infinite")


def test_a_decompression_bomb_is_refused(folded: Path, tmp_path: Path) -> None:
    png_header_only(tmp_path / "bomb.png", 15_000, 15_000)  # 225 megapixels
    one_line(oatdeploy("predict", str(folded), str(tmp_path / "bomb.png")), "decompression bomb")


@pytest.mark.parametrize(("edit", "says"), [
    (lambda m: m["model"].pop("num_classes"), "records no model.num_classes"),
    (lambda m: m["model"].update(input_shape=[784]), "not images [C, H, W]"),
    (lambda m: m["model"].update(input_shape=[1, 28, 1_000_000_000]), "input_shape is damaged"),
    (lambda m: m["model"].update(num_classes=5), "manifest says 5 classes"),
])
def test_predict_on_a_manifest_that_does_not_describe_images(folded: Path, tmp_path: Path,
                                                             edit: Callable[[dict[str, Any]], None],
                                                             says: str) -> None:
    edit_manifest(folded, edit)
    small_png(tmp_path / "x.png")
    one_line(oatdeploy("predict", str(folded), str(tmp_path / "x.png")), says)


def test_a_5000_character_path_in_the_manifest(folded: Path) -> None:
    edit_manifest(folded, lambda m: m["variants"][0].update(onnx="a" * 5000 + ".onnx"))
    one_line(oatdeploy("info", str(folded)), "5,005 characters")


@contextlib.contextmanager
def tmpfs(at: Path, size_kb: int) -> Iterator[Path]:
    at.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(at)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield at
    finally:
        subprocess.run(["umount", "-l", str(at)], check=True)


def fill(folder: Path) -> None:
    """Take every free byte of the file system `folder` is on."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)


def test_disk_full_during_profile_and_quantize(folded: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "small", 2048) as mnt:
        deploy = Path(shutil.copytree(folded, mnt / "d"))
        before = (deploy / "manifest.json").read_bytes()
        fill(mnt)
        one_line(oatdeploy("profile", str(deploy), "--runs", "5", "--rounds", "2"), "no space left on the device")
        one_line(oatdeploy("quantize", str(deploy), "--calib-size", "4"), "no space left on the device")
        assert (deploy / "manifest.json").read_bytes() == before
        assert json.loads(before)["variants"]


def test_read_only_deployment_for_quantize_and_plot(folded: Path, tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", 2048) as mnt:
        deploy = Path(shutil.copytree(folded, mnt / "d"))
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        one_line(oatdeploy("quantize", str(deploy), "--calib-size", "4"), "cannot write in")
        if importlib.util.find_spec("matplotlib") is not None:  # the device suite runs without the plot extra
            one_line(oatdeploy("plot", str(deploy)), "read-only file system")
