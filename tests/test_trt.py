"""TensorRT engines end to end. Runs only where `import tensorrt` works and a CUDA binding sees a GPU."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from oatdeploy.runtime.backends import tensorrt_installed

if not tensorrt_installed():
    pytest.skip("TensorRT is not installed (JetPack's python3-libnvinfer or `pip install tensorrt`); these tests "
                "need it and a GPU", allow_module_level=True)
import tensorrt as trt

from oatdeploy.export.parity import cpu_session, run_graph
from oatdeploy.runtime import Deployment
from oatdeploy.runtime.backends.cuda import get_cuda
from oatdeploy.runtime.engines import build_engines
from oatdeploy.runtime.errors import InputError, OatError
from oatdeploy.runtime.folder import load_manifest
from oatdeploy.runtime.precision import verify_precision
from oatdeploy.runtime.quantize import quantize_deployment
from tests.conftest import export_run, oatdeploy_cli


@pytest.fixture(scope="module", autouse=True)
def gpu() -> None:
    try:
        get_cuda()
    except OatError as e:
        pytest.skip(f"TensorRT imports but no CUDA binding works here: {e}")


@pytest.fixture(scope="module")
def folded(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_run(trained_run, tmp_path_factory.mktemp("trt") / "fm")


@pytest.fixture(scope="module")
def shared(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_run(trained_run, tmp_path_factory.mktemp("trt") / "fm-shared", "shared")


def images(deploy: Path, n: int) -> np.ndarray:
    with np.load(deploy / "verify/clean.npz") as npz:
        return npz["x"][:n].astype(np.float32)


@pytest.mark.parametrize(("precision", "atol", "agree"), [("fp32", 1e-3, 1.0), ("fp16", 5e-2, 0.95)])
def test_engines_match_onnx_runtime(folded: Path, precision: str, atol: float, agree: float) -> None:
    entries = build_engines(folded, precision, batch_profile=(1, 8, 16), workspace_mb=256, progress=False)
    manifest = load_manifest(folded)  # engine sha256s are checked like every other artifact
    assert len(entries) == len(manifest["variants"])
    assert list((folded / "engines").glob("timing-*.cache"))
    x = images(folded, 16)
    dep = Deployment.load(folded, backend="trt", precision=precision)
    for v, served in zip(manifest["variants"], dep.variants, strict=True):
        (engine,) = [e for e in v["engines"] if e["precision"] == precision]
        assert engine["trt_version"] == trt.__version__ and engine["batch_profile"] == {"min": 1, "opt": 8, "max": 16}
        reference = run_graph(cpu_session(folded / v["onnx"]), x)
        with dep.runner(served) as runner:
            out = runner.infer(x)
            assert np.abs(out - reference).max() <= atol
            assert (out.argmax(1) == reference.argmax(1)).mean() >= agree
            assert runner.infer(x[:1]).shape == (1, reference.shape[1])
            with pytest.raises(InputError, match="batch of 17"):
                runner.infer(np.concatenate([x, x[:1]]))


def test_shared_engine_takes_the_lambda_index_and_serves_threads(shared: Path) -> None:
    build_engines(shared, "fp32", batch_profile=(1, 4, 8), workspace_mb=256, progress=False)
    manifest = load_manifest(shared)
    x = images(shared, 8)
    v = manifest["variants"][1]
    session = cpu_session(shared / v["onnx"])
    with Deployment.load(shared, backend="trt").runner(Deployment.load(shared, backend="trt").variants[1]) as runner:
        expected = {li: run_graph(session, x, li) for li in range(len(manifest["model"]["lambdas"]))}
        results: dict[int, np.ndarray] = {}

        def work(li: int) -> None:
            for _ in range(20):
                results[li] = runner.infer(x, li)

        threads = [threading.Thread(target=work, args=(li,)) for li in expected]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for li, out in results.items():
            assert np.abs(out - expected[li]).max() <= 1e-3


def test_int8_engine_verifies_and_profile_and_select_use_it(folded: Path) -> None:
    if int(trt.__version__.split(".")[0]) >= 10:  # explicit quantization: the engine compiles the Q/DQ graph
        quantize_deployment(folded, "int8", calib_size=64, progress=False)
    entries = build_engines(folded, "int8", batch_profile=(1, 8, 16), workspace_mb=256, calib_size=64,
                            progress=False)
    assert {e["method"] for e in entries} == {"int8-qdq" if int(trt.__version__.split(".")[0]) >= 10
                                              else "int8-calibrator"}
    rows = verify_precision(folded, "int8", backend="trt", progress=False)
    assert all(r["source"] == "trt-int8" and abs(r["clean_acc"] - r["fp32"]["clean_acc"]) <= 0.15 for r in rows)
    done = oatdeploy_cli("profile", str(folded), "--backend", "trt", "--precision", "int8", "--runs", "5", "--quiet")
    assert done.returncode == 0, done.stderr
    dep = Deployment.load(folded, backend="trt", precision="int8")
    assert all(v.latency_ms is not None and v.path.endswith(".engine") for v in dep.variants)
    chosen = dep.select(max_latency_ms=1e6, min_robust_acc=0.0)
    assert chosen.clean_acc == max(v.clean_acc for v in dep.variants)
