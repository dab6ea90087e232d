"""The manifest: paths confined to the folder, updates that two processes cannot lose, files that other users can
read and that survive a power cut, and a load that checks what it will serve."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import pytest

from oatdeploy.runtime import Deployment, atomic
from oatdeploy.runtime.atomic import atomic_write_bytes, atomic_write_json
from oatdeploy.runtime.errors import ArtifactError, OatWarning
from oatdeploy.runtime.folder import read_manifest
from oatdeploy.runtime.precision import verify_precision
from tests.runtime.deploykit import edit_manifest, oatdeploy


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
from oatdeploy.runtime.folder import update_variants
def bump(v):
    if v.id == "lam0-w0.5":
        v.verification.samples += 1
for _ in range(int(sys.argv[2])):
    update_variants(sys.argv[1], bump)
"""


def test_two_processes_updating_the_manifest_lose_nothing(folded: Path) -> None:
    n = 150
    before = read_manifest(folded).variants[0].verification.samples
    procs = [subprocess.Popen([sys.executable, "-c", UPDATER, str(folded), str(n)]) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert read_manifest(folded).variants[0].verification.samples == before + 2 * n


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


def metrics(i: int, **changes: Any) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["variants"][i]["metrics"].update(changes)


def rename(key: str, to: str, i: int = 0) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["variants"][i].update({to: m["variants"][i].pop(key)})


HAND_EDITS = {  # what a hand edit does -> (what the one error line must name, the fix it must give)
    "accuracy as a string": (metrics(2, robust_acc="0.96"), "variants[2].metrics.robust_acc", "without quotes: 0.96"),
    "lambda 1.5": (lambda m: m["variants"][1].update({"lambda": 1.5}), "variants[1].lambda", "in [0, 1]"),
    "width -1": (lambda m: m["variants"][1].update(width=-1), "variants[1].width", "in (0, 1]"),
    "accuracy 1.7": (metrics(1, robust_acc=1.7), "variants[1].metrics.robust_acc", "fractions (0.96 for 96 %)"),
    "duplicate id": (lambda m: m["variants"][3].update(id="lam0-w0.5"), "variants[3].id", "ids must be unique"),
    "misspelt key": (lambda m: m["variants"][0]["metrics"].update(robust_ac=m["variants"][0]["metrics"].pop(
        "robust_acc")), "variants[0].metrics.robust_ac", "did you mean 'robust_acc'"),
    "misspelt variant key": (rename("lambda", "lamda"), "variants[0].lamda", "did you mean 'lambda'"),
    "missing key": (lambda m: m["variants"][0].pop("onnx"), "variants[0] ", "required key 'onnx'"),
    "interval not holding its value": (metrics(0, clean_ci95=[0.1, 0.2]), "variants[0].metrics.clean_ci95",
                                       "contains its estimate"),
    "interval reversed": (metrics(0, clean_ci95=[0.95, 0.8]), "variants[0].metrics.clean_ci95", "[low, high]"),
    "NaN accuracy": (metrics(0, clean_acc=float("nan")), "variants[0].metrics.clean_acc", "in [0, 1]"),
    "lambda the model lacks": (lambda m: m["variants"][0].update({"lambda": 0.7}), "variants[0].lambda",
                               "model.lambdas (0, 0.4, 1)"),
    "negative latency": (lambda m: m["variants"][0].update(latency={"x|ort|fp32|b1": {"p50_ms": -1}}),
                         "variants[0].latency['x|ort|fp32|b1'].p50_ms", "oatdeploy profile"),
    "misspelt precision": (lambda m: m["variants"][0].update(quantized={"int 8": {"onnx": "q.onnx",
                                                                                 "sha256": "0" * 64}}),
                           "variants[0].quantized['int 8']", "did you mean 'int8'"),
    "shape as a string": (lambda m: m["model"].update(input_shape="1,8,8"), "model.input_shape", "[...]"),
}


@pytest.mark.parametrize("case", sorted(HAND_EDITS))
def test_a_hand_edited_manifest_that_breaks_the_schema_is_one_line_naming_field_and_fix(folded: Path,
                                                                                       case: str) -> None:
    edit, field, fix = HAND_EDITS[case]
    edit_manifest(folded, edit)
    with pytest.raises(ArtifactError) as info:
        read_manifest(folded)
    assert field in str(info.value) and fix in str(info.value)
    done = oatdeploy("select", str(folded))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert field in done.stderr and fix in done.stderr


def test_a_key_written_twice_is_refused(folded: Path) -> None:
    text = (folded / "manifest.json").read_text().replace('"robust_acc": ', '"robust_acc": 0.1, "robust_acc": ', 1)
    (folded / "manifest.json").write_text(text)
    with pytest.raises(ArtifactError, match="'robust_acc' appears twice in one object; keep one"):
        read_manifest(folded)


def test_an_unknown_key_that_is_no_misspelling_is_named_and_kept(folded: Path) -> None:
    edit_manifest(folded, lambda m: m["variants"][0].update(colour="red"))
    with pytest.warns(OatWarning, match=r"does not know variants\[0\]\.colour"):
        Deployment.load(folded)
    done = oatdeploy("select", str(folded))
    assert done.returncode == 0 and "variants[0].colour" in done.stderr


def test_what_the_device_writes_passes_the_schema_silently(folded: Path, shared: Path) -> None:
    from oatdeploy.runtime.quantize import quantize_deployment

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="manifest.json")  # (a noisy profile may warn, fairly)
        for folder in (folded, shared):
            quantize_deployment(folder, "int8", calib_size=8, progress=False)
            verify_precision(folder, "int8", progress=False)
            Deployment.load(folder).profile(min_runs=5, min_seconds=0.0, warmup=1, rounds=2)
            read_manifest(folder)
