"""Compile one ONNX graph into a serialized TensorRT engine: the only code that calls TensorRT's builder.

Which graph and which path (see `runtime.engines.plan_builds`):
- `fp32`: the fp32 graph as it is;
- `int8-qdq` (TensorRT ≥ 10): the Q/DQ graph `oatdeploy quantize` wrote, in a strongly typed network, so
  TensorRT runs the int8 model that `verify` measured under ONNX Runtime (explicit quantization);
- `int8-calibrator` (TensorRT < 10): the fp32 graph with the INT8 flag and an IInt8EntropyCalibrator2 fed
  from calib.npz (implicit quantization; deprecated in 10.1, removed in TensorRT 11);
- `fp16-flag` (TensorRT < 11): the fp32 graph with the FP16 builder flag;
- `fp16-onnx` (TensorRT ≥ 11, where the flag is gone): the fp16 graph from `quantize`, strongly typed.
TensorRT 8.5/8.6 (JetPack 5) needs the EXPLICIT_BATCH network flag; 10.x has only explicit batch.
The timing cache and calibration cache come in and go out as bytes: the caller hashes and stores them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from oatdeploy.errors import OatError
from oatdeploy.runtime.backends.base import INPUT_NAME
from oatdeploy.runtime.backends.cuda import CudaMemory, get_cuda
from oatdeploy.runtime.calibration import calibration_feeds

if TYPE_CHECKING:
    import tensorrt as trt

STRONGLY_TYPED_METHODS = ("int8-qdq", "fp16-onnx")


def tensorrt_major(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


def entropy_calibrator(x: np.ndarray, batch_size: int, cache: bytes | None, cuda: CudaMemory,
                       lam_count: int | None = None) -> trt.IInt8EntropyCalibrator2:
    """A trt.IInt8EntropyCalibrator2 over `x` (TensorRT < 10 only), feeding device buffers allocated once."""
    import tensorrt as trt

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # required by the pybind base class
            self.feeds: Iterator[dict[str, Any]] = calibration_feeds(x, batch_size, lam_count)
            self.stream = cuda.stream_create()
            first = next(calibration_feeds(x, batch_size, lam_count))
            self.device = {name: cuda.alloc(arr.nbytes) for name, arr in first.items()}
            self.written: bytes | None = None

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            feed = next(self.feeds, None)
            if feed is None:
                return None
            for name, arr in feed.items():
                cuda.h2d_async(self.device[name], arr, self.stream)
            cuda.stream_sync(self.stream)
            return [self.device[name] for name in names]

        def read_calibration_cache(self) -> bytes | None:
            return cache

        def write_calibration_cache(self, data: Any) -> None:
            self.written = bytes(data)

        def free(self) -> None:
            for ptr in self.device.values():
                cuda.free(ptr)
            cuda.stream_destroy(self.stream)
            self.device = {}

    return EntropyCalibrator()


class TensorRTCompiler:
    """Builds engines on this GPU with one shared timing cache (later graphs skip most tactic timing)."""

    def __init__(self, workspace_mb: int = 1024) -> None:
        import tensorrt as trt

        from oatdeploy.runtime.engines import current_device

        self.trt = trt
        self.workspace_mb = workspace_mb
        self.cuda = get_cuda()
        self.device = current_device(self.cuda)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.major = tensorrt_major(trt.__version__)
        self._cache: trt.ITimingCache | None = None
        self._cache_seed = b""
        self.calibration_cache: bytes | None = None

    def use_timing_cache(self, data: bytes | None) -> None:
        """Start from a timing cache the caller has checked (its sha256 matched the manifest)."""
        self._cache_seed = data or b""

    def timing_cache(self) -> bytes | None:
        return None if self._cache is None else bytes(memoryview(self._cache.serialize()))

    def _network(self, builder: trt.Builder, method: str) -> trt.INetworkDefinition:
        flags = 0
        if method in STRONGLY_TYPED_METHODS:
            flags |= 1 << int(self.trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        if self.major < 10:
            flags |= 1 << int(self.trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        return builder.create_network(flags)

    def compile(self, graph: bytes, label: str, method: str, profile: tuple[int, int, int],
                input_shape: tuple[int, ...], calibration: dict[str, Any] | None = None) -> bytes:
        """Serialized engine for `graph`; `calibration` = {x, batch, lam_count, cache} for int8-calibrator."""
        trt = self.trt
        builder = trt.Builder(self.logger)
        network = self._network(builder, method)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse(graph):
            errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
            raise OatError(f"TensorRT could not parse {label}: {errors}; re-export with this oatdeploy version")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace_mb << 20)
        if self._cache is None:
            self._cache = config.create_timing_cache(self._cache_seed)
        if not config.set_timing_cache(self._cache, False):
            self._cache = config.create_timing_cache(b"")  # a cache from another build setup: start afresh
            config.set_timing_cache(self._cache, False)
        opt_profile = builder.create_optimization_profile()
        opt_profile.set_shape(INPUT_NAME, *[trt.Dims([b, *input_shape]) for b in profile])
        config.add_optimization_profile(opt_profile)
        calibrator = None
        if method == "fp16-flag":
            config.set_flag(trt.BuilderFlag.FP16)
        elif method == "int8-calibrator":
            if calibration is None:
                raise OatError(f"{label}: int8 calibration needs calibration images")
            config.set_flag(trt.BuilderFlag.INT8)
            # Calibration runs at the calibration profile's opt shape: a fixed batch of calibration images.
            calib_profile = builder.create_optimization_profile()
            fixed = trt.Dims([calibration["batch"], *input_shape])
            calib_profile.set_shape(INPUT_NAME, fixed, fixed, fixed)
            config.set_calibration_profile(calib_profile)
            calibrator = entropy_calibrator(calibration["x"], calibration["batch"], calibration.get("cache"),
                                            self.cuda, calibration.get("lam_count"))
            config.int8_calibrator = calibrator
        try:
            serialized = builder.build_serialized_network(network, config)
        finally:
            if calibrator is not None:
                self.calibration_cache = calibrator.written
                calibrator.free()
        if serialized is None:
            raise OatError(f"TensorRT failed to build {label} ({method}); see its log above. Try a larger "
                           "--workspace-mb or a smaller --batch max")
        return bytes(memoryview(serialized))
