"""Reduced precision without a GPU on a real export: ORT int8/fp16 models, SA/RA verification, calibration data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from oatdeploy.runtime import Deployment
from oatdeploy.runtime.atomic import sha256_file
from oatdeploy.runtime.backends import tensorrt_installed
from oatdeploy.runtime.calibration import OrtCalibrationReader, calibration_feeds, load_calibration
from oatdeploy.runtime.errors import ArtifactError, OatError
from oatdeploy.runtime.folder import load_manifest, read_manifest
from oatdeploy.runtime.precision import verify_precision
from oatdeploy.runtime.quantize import quantize_deployment
from tests.conftest import export_run, oatdeploy_cli

SAMPLES = 64


@pytest.fixture(scope="module")
def folded(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_run(trained_run, tmp_path_factory.mktemp("q") / "fm", samples=SAMPLES)


@pytest.fixture(scope="module")
def shared(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_run(trained_run, tmp_path_factory.mktemp("q") / "fm-shared", "shared", samples=SAMPLES)


def copy_of(deploy: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(deploy, tmp_path / deploy.name))


def test_int8_ort_quantize_verify_and_select(folded: Path) -> None:
    rows = quantize_deployment(folded, "int8", calib_size=64, progress=False)
    manifest = load_manifest(folded)  # the quantized files are now sha256-checked artifacts too
    assert len(rows) == len(manifest.variants)
    for v in manifest.variants:
        q = v.quantized["int8"]
        assert q.onnx == f"quantized/{v.id}-int8-{q.sha256[:12]}.onnx"
        assert q.sha256 == sha256_file(folded / q.onnx)
        ops = {n.op_type for n in onnx.load(str(folded / q.onnx)).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    results = verify_precision(folded, "int8", progress=False)
    manifest = load_manifest(folded)
    for (vid, r), v in zip(results, manifest.variants, strict=True):
        m = v.precision_metrics["int8"]
        assert vid == v.id and m.source == "ort-int8" and m.samples == SAMPLES
        assert (m.clean_acc, m.robust_acc) == (r.clean_acc, r.robust_acc)
        assert 0 <= m.clean_acc <= 1 and 0 <= m.robust_acc <= 1
        # a few points at most on 64 images: int8 must not change what the network is
        assert abs(m.clean_acc - m.fp32.clean_acc) <= 0.1
        assert abs(m.robust_acc - m.fp32.robust_acc) <= 0.1
    dep = Deployment.load(folded, precision="int8")
    by_id = {v.id: v for v in dep.variants}
    for v in manifest.variants:
        assert by_id[v.id].clean_acc == v.precision_metrics["int8"].clean_acc
        assert by_id[v.id].path == v.quantized["int8"].onnx
    best = dep.select(min_robust_acc=0.0, strict=True)  # int8 point estimates decide, not fp32's
    assert best.clean_acc == max(v.clean_acc for v in dep.variants)


def test_fp16_ort_via_cli_prints_fp32_beside_fp16(folded: Path) -> None:
    done = oatdeploy_cli("quantize", str(folded), "--precision", "fp16", "--quiet")
    assert done.returncode == 0, done.stderr
    done = oatdeploy_cli("verify", str(folded), "--precision", "fp16", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "SA fp32" in done.stdout and "RA fp16" in done.stdout and "lam0.4-w0.5" in done.stdout
    for v in load_manifest(folded).variants:
        m = v.precision_metrics["fp16"]
        assert m.source == "ort-fp16"
        assert abs(m.clean_acc - m.fp32.clean_acc) <= 2 / SAMPLES  # fp16 flips at most a borderline image
        model = onnx.load(str(folded / v.quantized["fp16"].onnx))
        assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 I/O kept


def test_shared_graphs_quantize_once_per_width_and_verify_every_lambda(shared: Path) -> None:
    rows = quantize_deployment(shared, "int8", calib_size=64, progress=False)
    manifest = load_manifest(shared)
    assert len(rows) == len(manifest.model.widths)
    assert {graph.onnx for graph, _ in rows} == {v.quantized["int8"].onnx for v in manifest.variants}
    results = verify_precision(shared, "int8", progress=False)
    assert [vid for vid, _ in results] == [v.id for v in manifest.variants]
    assert all(abs(r.clean_acc - r.fp32.clean_acc) <= 0.1 for _, r in results)


def test_verify_without_quantized_model_names_the_fix(shared: Path, tmp_path: Path) -> None:
    deploy = copy_of(shared, tmp_path)
    manifest = json.loads((deploy / "manifest.json").read_text())
    for v in manifest["variants"]:
        v.pop("quantized", None)
    (deploy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(OatError, match=r"oatdeploy quantize .* --precision fp16"):
        verify_precision(deploy, "fp16", progress=False)
    done = oatdeploy_cli("verify", str(deploy), "--precision", "fp16")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_calibration_round_trip_and_tamper_refusal(folded: Path, tmp_path: Path) -> None:
    with np.load(folded / "calib.npz") as npz:
        saved = npz["x"]
    manifest = read_manifest(folded)
    x, digest = load_calibration(folded, manifest)
    assert x.dtype == np.float32 and np.array_equal(x, saved) and digest == manifest.calibration.sha256
    assert np.array_equal(load_calibration(folded, manifest, limit=10)[0], saved[:10])
    feeds = list(calibration_feeds(x, 16, lam_count=3))
    assert len(feeds) == len(x) // 16 and all(f["input"].shape == (16, *x.shape[1:]) for f in feeds)
    assert [int(f["lam_index"][0]) for f in feeds] == [i % 3 for i in range(len(feeds))]
    reader = OrtCalibrationReader(x, 32)
    assert reader.get_next()["input"].shape[0] == 32 and "lam_index" not in reader.get_next()
    assert reader.get_next() is None
    tampered = copy_of(folded, tmp_path)
    np.savez_compressed(tampered / "calib.npz", x=saved[::-1].copy())
    with pytest.raises(ArtifactError, match="sha256"):
        load_calibration(tampered, manifest)
    (tampered / "calib.npz").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        load_calibration(tampered, manifest)


def test_calib_data_replaces_the_export_time_images_and_bad_files_exit_2(folded: Path, tmp_path: Path) -> None:
    with np.load(folded / "calib.npz") as npz:
        saved = npz["x"]
    own = tmp_path / "own.npz"
    np.savez(own, x=saved[::-1][:40].astype(np.float64))
    loaded, _ = load_calibration(folded, read_manifest(folded), source=own)
    assert np.array_equal(loaded, saved[::-1][:40].astype(np.float32))
    deploy = copy_of(folded, tmp_path)
    done = oatdeploy_cli("quantize", str(deploy), "--calib-data", str(own), "--calib-size", "32", "--quiet")
    assert done.returncode == 0, done.stderr
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((8, 3, 32, 32), np.float32))
    for bad, says in ((wrong, "the model takes"), (tmp_path / "none.npz", "does not exist")):
        done = oatdeploy_cli("quantize", str(deploy), "--calib-data", str(bad), "--quiet")
        assert done.returncode == 2 and says in done.stderr and done.stderr.count("\n") == 1, done.stderr


@pytest.mark.skipif(tensorrt_installed(), reason="TensorRT is installed here")
def test_build_engines_without_tensorrt_exits_2_naming_the_fix(folded: Path) -> None:
    done = oatdeploy_cli("build-engines", str(folded), "--precision", "fp16")
    assert done.returncode == 2
    assert "TensorRT is not installed" in done.stderr and "python3-libnvinfer" in done.stderr
    assert "oatdeploy[trt]" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = oatdeploy_cli("verify", str(folded), "--precision", "fp16", "--backend", "trt")
    assert done.returncode == 2 and "TensorRT is not installed" in done.stderr
