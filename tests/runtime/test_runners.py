"""Runners: input checked before anything reaches a device buffer, a bounded pool of TensorRT contexts,
artifacts deserialized from the bytes that were hashed (also when a variant is reloaded)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnx
import pytest

from oatdeploy.runtime import Deployment
from oatdeploy.runtime.atomic import sha256_file
from oatdeploy.runtime.backends.trt import TrtRunner
from oatdeploy.runtime.engines import build_engines
from oatdeploy.runtime.errors import ArtifactError, InputError, OatError
from tests.runtime.deploykit import edit_manifest, predict
from tests.runtime.fake_tensorrt import FakeCompiler, FakeEngine, HostCudart, fake_engine, install_tensorrt

BAD_INPUTS = [
    (np.zeros((2, 8, 8, 1), np.float32), "NCHW, not NHWC"),  # NHWC
    (np.zeros((2, 3, 8, 8), np.float32), "channels"),  # 3 channels for a 1-channel model
    (np.zeros((2, 1, 16, 16), np.float32), "resolution"),  # another resolution
    (np.zeros((1, 8, 8), np.float32), "got shape (1, 8, 8)"),  # rank 3
    (np.zeros((0, 1, 8, 8), np.float32), "batch of 0"),
    (np.full((2, 1, 8, 8), 255, np.uint8), "x.astype(np.float32) / 255"),  # camera frames
    (np.zeros((2, 1, 8, 8), np.float64), "float32"),
    ([[0.0]], "numpy array"),
]


@pytest.mark.parametrize(("x", "says"), BAD_INPUTS)
def test_ort_runner_refuses_what_the_graph_does_not_take(folded_master: Path, x: object, says: str) -> None:
    dep = Deployment.load(folded_master)
    with dep.runner(dep.variants[0]) as runner, pytest.raises(InputError, match=says.replace("(", r"\(")
                                                               .replace(")", r"\)").replace("/", r"\/")):
        runner.infer(x)  # type: ignore[arg-type]


def test_shared_graph_lambda_index_is_range_checked(shared_master: Path) -> None:
    dep = Deployment.load(shared_master)
    v = dep.variants[0]
    x = dep.sample_input(2)
    with dep.runner(v) as runner:
        for bad in (3, -1, None, 1.0, True):
            with pytest.raises(InputError, match="λ index"):
                runner.infer(x, bad)  # type: ignore[arg-type]
        assert runner.infer(x, 2).shape == (2, 10)


@pytest.fixture()
def gpu(monkeypatch: pytest.MonkeyPatch) -> HostCudart:
    cudart = HostCudart()
    install_tensorrt(monkeypatch, cudart)
    FakeEngine.contexts_created = 0
    return cudart


def engine_runner(folded_master: Path, profile: tuple = (1, 1, 2), contexts: int = 2) -> tuple:
    model = (folded_master / "lam0-w1.onnx").read_bytes()
    return TrtRunner(fake_engine(model, profile), "fp32", "lam0-w1.engine", contexts=contexts), model


@pytest.mark.parametrize(("x", "says"), [*BAD_INPUTS, (np.zeros((3, 1, 8, 8), np.float32), "batch of 3")])
def test_trt_runner_checks_input_before_any_copy(folded_master: Path, gpu: HostCudart, x: object, says: str) -> None:
    runner, _ = engine_runner(folded_master)  # buffers sized for batch 2 of [1, 8, 8]
    with pytest.raises(InputError):
        runner.infer(x)  # type: ignore[arg-type]
    runner.close()


def test_trt_runner_serves_what_onnx_runtime_computes(folded_master: Path, gpu: HostCudart) -> None:
    runner, model = engine_runner(folded_master)
    x = np.random.default_rng(0).random((2, 1, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(runner.infer(x), predict(model, x), rtol=1e-6)
    np.testing.assert_allclose(runner.infer(x[:1]), predict(model, x[:1]), rtol=1e-6)
    runner.close()
    assert not gpu.buffers and gpu.streams == 0, "close() left device memory or streams behind"


def test_short_lived_threads_share_a_bounded_pool_of_contexts(folded_master: Path, gpu: HostCudart) -> None:
    runner, model = engine_runner(folded_master, contexts=2)
    x = np.random.default_rng(1).random((2, 1, 8, 8), dtype=np.float32)
    expected = predict(model, x)
    wrong: list[int] = []

    def call(i: int) -> None:
        if not np.allclose(runner.infer(x), expected, rtol=1e-6):
            wrong.append(i)

    for start in range(0, 100, 10):  # 100 threads, each one call and gone
        threads = [threading.Thread(target=call, args=(i,)) for i in range(start, start + 10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not wrong
    assert FakeEngine.contexts_created <= 2 and runner.contexts <= 2
    runner.close()
    assert not gpu.buffers and gpu.streams == 0
    with pytest.raises(OatError, match="closed"):
        runner.infer(x)


def test_an_evicted_variant_is_reloaded_from_hashed_bytes(folded: Path) -> None:
    dep = Deployment.load(folded)
    first, second = dep.variants[0], dep.variants[1]
    sw = dep.switcher(max_loaded=1)
    sw.use(first)
    sw.use(second)  # evicts the first
    (folded / first.path).write_bytes((folded / dep.variants[2].path).read_bytes())  # swapped on disk since load
    with pytest.raises(ArtifactError, match="sha256"):
        sw.use(first)
    assert sw.current.id == second.id
    assert sw(dep.sample_input(1)).shape == (1, 10)


def test_onnx_external_data_is_refused(folded: Path) -> None:
    model = onnx.load(str(folded / "lam0-w1.onnx"))
    onnx.save(model, str(folded / "lam0-w1.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    edit_manifest(folded, lambda m: m["variants"][3].update(sha256=sha256_file(folded / "lam0-w1.onnx")))
    dep = Deployment.load(folded)
    with pytest.raises(ArtifactError, match="external data"):
        dep.runner(dep.variants[3])


def test_trt_deployment_serves_through_the_chosen_engine(folded: Path, gpu: HostCudart) -> None:
    build_engines(folded, "fp32", batch_profile=(1, 2, 4), compiler=FakeCompiler(), progress=False)
    dep = Deployment.load(folded, backend="trt")
    x = dep.sample_input(3)
    with dep.switcher(history=10) as sw:
        for v in dep.variants:
            sw.use(v)
            onnx_bytes = (folded / Deployment.load(folded).variants_for()[dep.variants.index(v)].path).read_bytes()
            np.testing.assert_allclose(sw(x), predict(onnx_bytes, x), rtol=1e-6)
    assert all(v.path.startswith("engines/") and v.path.endswith(".engine") for v in dep.variants)
