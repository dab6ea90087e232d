"""build-engines and quantize: a kill or an exception at any point leaves a deployment that loads and serves
ONNX Runtime fp32, and a rerun completes; int8 engines come from the Q/DQ graph on TensorRT ≥ 10."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from oatdeploy.runtime import Deployment
from oatdeploy.runtime.engines import build_engines, plan_builds
from oatdeploy.runtime.errors import OatError, OatWarning
from oatdeploy.runtime.folder import load_manifest, read_manifest, update_manifest
from oatdeploy.runtime.manifest import Manifest
from oatdeploy.runtime.quantize import quantize_deployment
from tests.runtime.deploykit import edit_manifest
from tests.runtime.fake_tensorrt import FakeCompiler, HostCudart, install_tensorrt

HERE = Path(__file__).parent

# Runs one build in a child process and SIGKILLs it right after its k-th rename (a file or the manifest landing).
KILLER = """
import os, signal, sys
sys.path.insert(0, {here!r})
real, count = os.replace, [0]
def replace(src, dst):
    real(src, dst)
    count[0] += 1
    if count[0] == {k}:
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
{build}
print("completed", count[0])
"""
QUANTIZE = "from oatdeploy.runtime.quantize import quantize_deployment\n" \
           "quantize_deployment({folder!r}, 'int8', calib_size=8, progress=False)"
BUILD = "from fake_tensorrt import FakeCompiler\nfrom oatdeploy.runtime.engines import build_engines\n" \
        "build_engines({folder!r}, 'fp32', batch_profile=(1, 2, 8), compiler=FakeCompiler(), progress=False)"


def serves_fp32(folder: Path) -> None:
    """The deployment loads (every fp32 graph checked) and serves; every file its manifest names is intact."""
    dep = Deployment.load(folder)
    assert dep.switcher()(dep.sample_input(2)).shape == (2, 10)
    load_manifest(folder, check_sha256=True)


def managed_files(folder: Path) -> set:
    return {f"{d}/{p.name}" for d in ("engines", "quantized") if (folder / d).is_dir() for p in (folder / d).iterdir()}


def referenced(folder: Path) -> set:
    return {ref.path for _, ref in read_manifest(folder).files()}


def kill_at_every_rename(folder: Path, build: str) -> int:
    """Kill the build after each of its renames in turn; returns how many renames a whole run makes."""
    k = 1
    while True:
        script = KILLER.format(here=str(HERE), k=k, build=build.format(folder=str(folder)))
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
        if done.returncode == 0:
            assert "completed" in done.stdout
            return k - 1
        assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
        serves_fp32(folder)
        k += 1


def test_killing_quantize_after_any_rename_never_bricks_the_deployment(shared: Path) -> None:
    quantize_deployment(shared, "int8", calib_size=16, progress=False)  # what a rerun replaces
    renames = kill_at_every_rename(shared, QUANTIZE)
    assert renames >= 6  # two graphs: each written, renamed to its content name, recorded
    serves_fp32(shared)
    assert managed_files(shared) == {p for p in referenced(shared) if p.startswith("quantized/")}
    assert Deployment.load(shared, precision="int8").variants  # the rerun's int8 graphs serve


def test_killing_build_engines_after_any_rename_never_bricks_the_deployment(shared: Path) -> None:
    build_engines(shared, "fp32", batch_profile=(1, 1, 4), compiler=FakeCompiler(), progress=False)
    renames = kill_at_every_rename(shared, BUILD)
    assert renames >= 7  # two engines (written, renamed, recorded) and the timing cache
    serves_fp32(shared)
    manifest = read_manifest(shared)
    assert all(len(v.engines) == 1 and v.engines[0].batch_profile.max == 8 for v in manifest.variants)
    assert managed_files(shared) == {p for p in referenced(shared) if p.startswith("engines/")}


@pytest.mark.parametrize("build", ["quantize", "build-engines"])
def test_an_exception_at_any_rename_leaves_a_working_deployment(shared: Path, monkeypatch: pytest.MonkeyPatch,
                                                                build: str) -> None:
    def run() -> None:
        if build == "quantize":
            quantize_deployment(shared, "int8", calib_size=8, progress=False)
        else:
            build_engines(shared, "fp32", batch_profile=(1, 2, 8), compiler=FakeCompiler(), progress=False)

    run()
    real, k = os.replace, 0
    while True:
        k += 1
        count = [0]

        def failing(src: Any, dst: Any, k: int = k, count: list = count) -> None:
            count[0] += 1
            if count[0] == k:
                raise OSError(28, "No space left on device")
            real(src, dst)

        monkeypatch.setattr(os, "replace", failing)
        try:
            run()
        except OSError:
            monkeypatch.setattr(os, "replace", real)
            serves_fp32(shared)
            continue
        monkeypatch.setattr(os, "replace", real)
        break
    assert k > 5
    run()
    serves_fp32(shared)


def test_int8_engines_come_from_the_qdq_graph_on_tensorrt_10(folded: Path) -> None:
    manifest = read_manifest(folded)
    with pytest.raises(OatError, match=r"oatdeploy quantize .* --precision int8"):
        plan_builds(folded, manifest, "int8", "10.3.0")
    quantize_deployment(folded, "int8", calib_size=16, progress=False)
    compiler = FakeCompiler("10.3.0")
    entries = build_engines(folded, "int8", batch_profile=(1, 1, 4), compiler=compiler, progress=False)
    manifest = read_manifest(folded)
    for call, v in zip(compiler.calls, manifest.variants):
        qdq = v.quantized["int8"]
        assert call["method"] == "int8-qdq" and call["calibration"] is None
        assert call["label"] == qdq.onnx and call["graph"] == (folded / qdq.onnx).read_bytes()
    assert {e.method for e in entries} == {"int8-qdq"}
    assert all(v.engines[0].onnx == v.quantized["int8"].onnx for v in manifest.variants)


def test_tensorrt_8_calibrates_and_keeps_its_cache_hashed(folded: Path) -> None:
    compiler = FakeCompiler("8.5.2")
    entries = build_engines(folded, "int8", batch_profile=(1, 1, 4), calib_size=16, compiler=compiler,
                            progress=False)
    assert {e.method for e in entries} == {"int8-calibrator"}
    first = compiler.calls[0]
    assert first["label"] == "lam0-w0.5.onnx" and first["calibration"]["x"].shape == (16, 1, 8, 8)
    caches = read_manifest(folded).engine_caches
    assert {c.kind for c in caches} == {"timing", "calibration"} and len(caches) == 7
    again = FakeCompiler("8.5.2")
    build_engines(folded, "int8", batch_profile=(1, 1, 4), calib_size=16, compiler=again, progress=False)
    assert again.seed == b"timing:6" and again.calls[0]["calibration"]["cache"] == b"scales:lam0-w0.5.onnx"
    # a cache changed on disk is not fed to TensorRT: it is skipped, with a warning
    timing = next(c for c in read_manifest(folded).engine_caches if c.kind == "timing")
    (folded / timing.path).write_bytes(b"crafted")
    third = FakeCompiler("8.5.2")
    with pytest.warns(OatWarning, match="not using a build cache"):
        build_engines(folded, "int8", batch_profile=(1, 1, 4), calib_size=16, compiler=third, progress=False)
    assert third.seed is None


@pytest.mark.parametrize(("version", "method"), [("8.6.2", "fp16-flag"), ("10.3.0", "fp16-flag"),
                                                 ("11.0.0", "fp16-onnx")])
def test_fp16_path_per_tensorrt(folded: Path, version: str, method: str) -> None:
    if method == "fp16-onnx":
        quantize_deployment(folded, "fp16", progress=False)
    (job, *_) = plan_builds(folded, read_manifest(folded), "fp16", version)
    assert job.method == method and job.source.startswith("quantized/") == (method == "fp16-onnx")


def test_engines_for_another_device_or_a_stale_one(folded: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_tensorrt(monkeypatch, HostCudart())
    build_engines(folded, "fp32", batch_profile=(1, 1, 4), compiler=FakeCompiler(), progress=False)

    def other_gpu(m: Manifest) -> None:
        for v in m.variants:
            v.engines[0].device = "NVIDIA Jetson AGX Orin"

    update_manifest(folded, other_gpu)
    with pytest.raises(OatError, match=r"GPU NVIDIA Jetson AGX Orin at build, Fake GPU here.*oatdeploy build-engines"):
        Deployment.load(folded, backend="trt")
    build_engines(folded, "fp32", batch_profile=(1, 1, 4), compiler=FakeCompiler(), progress=False)
    assert all(len(v.engines) == 2 for v in read_manifest(folded).variants)  # both devices' engines kept

    newest = read_manifest(folded).variants[0].engines[1].to_json()
    shutil.copy(folded / newest["path"], folded / "engines" / "kept.engine")

    def older_copy(m: dict) -> None:  # an older, intact build for this device; the newest then goes bad
        m["variants"][0]["engines"].append(dict(newest, path="engines/kept.engine", built_at="2020-01-01T00:00:00Z"))

    edit_manifest(folded, older_copy)
    (folded / newest["path"]).write_bytes(b"truncated")
    with pytest.warns(OatWarning, match="ignoring a stale engine of lam0-w0.5"):
        dep = Deployment.load(folded, backend="trt")
    assert dep.variants[0].path == "engines/kept.engine" and dep.switcher()(dep.sample_input(1)).shape == (1, 10)
    (folded / "engines" / "kept.engine").unlink()
    with pytest.raises(OatError, match="unusable"):
        Deployment.load(folded, backend="trt")
    build_engines(folded, "fp32", batch_profile=(1, 1, 4), compiler=FakeCompiler(), progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Deployment.load(folded, backend="trt").variants


def test_a_second_build_on_the_same_folder_stops_at_once(folded: Path) -> None:
    from oatdeploy.runtime.artifacts import build_lock

    with build_lock(folded), pytest.raises(OatError, match="another `oatdeploy build-engines` or `quantize`"):
        quantize_deployment(folded, "int8", calib_size=8, progress=False)

