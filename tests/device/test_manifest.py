"""The manifest: paths confined to the folder, updates that two processes cannot lose, files that other users can
read and that survive a power cut, and a load that checks what it will serve."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from device.deploykit import edit_manifest
from oatdeploy import atomic
from oatdeploy.atomic import atomic_write_bytes, atomic_write_json
from oatdeploy.errors import ArtifactError
from oatdeploy.runtime import Deployment
from oatdeploy.runtime.manifest import read_manifest


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink"])
def test_a_manifest_pointing_outside_its_folder_is_refused(folded: Path, tmp_path: Path, where: str) -> None:
    outside = tmp_path / "outside.onnx"
    shutil.copy(folded / "lam0-w0.5.onnx", outside)  # a real graph with the right sha256, just not in the folder
    rel = {"parent": "../outside.onnx", "absolute": str(outside), "symlink": "link.onnx"}[where]
    if where == "symlink":
        (folded / "link.onnx").symlink_to(outside)
    edit_manifest(folded, lambda m: m["variants"][0].update(onnx=rel))
    with pytest.raises(ArtifactError, match="outside the deployment folder"):
        Deployment.load(folded)
    with pytest.raises(ArtifactError, match="outside the deployment folder"):
        Deployment.load(folded, check_sha256=False)


def test_symlinks_inside_the_folder_are_fine(folded: Path) -> None:
    (folded / "graphs").mkdir()
    shutil.move(str(folded / "lam0-w0.5.onnx"), folded / "graphs" / "a.onnx")
    (folded / "lam0-w0.5.onnx").symlink_to("graphs/a.onnx")
    assert Deployment.load(folded).variants[0].path == "lam0-w0.5.onnx"


UPDATER = """
import sys
from oatdeploy.runtime.manifest import update_variants
def bump(v):
    if v["id"] == "lam0-w0.5":
        v["counter"] = v.get("counter", 0) + 1
for _ in range(int(sys.argv[2])):
    update_variants(sys.argv[1], bump)
"""


def test_two_processes_updating_the_manifest_lose_nothing(folded: Path) -> None:
    n = 150
    procs = [subprocess.Popen([sys.executable, "-c", UPDATER, str(folded), str(n)]) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert read_manifest(folded)["variants"][0]["counter"] == 2 * n


def test_written_files_get_the_usual_mode_and_keep_a_replaced_files_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "new.json", {"a": 1})
        assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o644
        (tmp_path / "kept").write_bytes(b"old")
        (tmp_path / "kept").chmod(0o640)
        atomic_write_bytes(tmp_path / "kept", b"new")
        assert stat.S_IMODE((tmp_path / "kept").stat().st_mode) == 0o640 and (tmp_path / "kept").read_bytes() == b"new"
        os.umask(0o077)
        atomic_write_bytes(tmp_path / "private", b"x")
        assert stat.S_IMODE((tmp_path / "private").stat().st_mode) == 0o600
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept", "new.json", "private"]


def test_a_write_is_fsynced_file_then_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    atomic_write_bytes(tmp_path / "f", b"data")
    assert synced == ["file", "dir"]


def test_the_manifest_stays_readable_by_others_after_profile(folded: Path) -> None:
    old = os.umask(0o022)
    try:
        Deployment.load(folded).profile(min_runs=5, min_seconds=0.0, warmup=1)
    finally:
        os.umask(old)
    assert stat.S_IMODE((folded / "manifest.json").stat().st_mode) == 0o644


def test_load_checks_only_what_it_will_serve(folded: Path) -> None:
    from oatdeploy.runtime.quantize import quantize_deployment

    quantize_deployment(folded, "int8", calib_size=16, progress=False)
    int8 = Deployment.load(folded, precision="int8").variants[0].path
    (folded / int8).write_bytes(b"stale")  # an optional artifact of another precision goes bad
    (folded / "calib.npz").unlink()  # and the calibration images are gone
    edit_manifest(folded, lambda m: m["variants"][0].update(engines=[{
        "path": "engines/old.engine", "sha256": "0" * 64, "precision": "fp16", "trt_version": "8.5.2",
        "device": "Jetson Xavier NX", "compute_capability": "7.2", "batch_profile": {"min": 1, "opt": 1, "max": 8},
        "built_at": "2024-01-01T00:00:00Z"}]))  # and an old engine for another device is missing
    dep = Deployment.load(folded)  # ONNX Runtime fp32 serves the fp32 graphs: all intact
    assert dep.switcher()(dep.sample_input(1)).shape == (1, 10)
    with pytest.raises(ArtifactError, match="sha256"):
        Deployment.load(folded, precision="int8")
