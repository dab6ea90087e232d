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

from oatdeploy.runtime.backends.base import INPUT_NAME
from oatdeploy.runtime.backends.cuda import CudaMemory, get_cuda
from oatdeploy.runtime.calibration import calibration_feeds
from oatdeploy.runtime.engines import current_device, tensorrt_major
from oatdeploy.runtime.errors import OatError

if TYPE_CHECKING:
    import tensorrt as trt

STRONGLY_TYPED_METHODS = ("int8-qdq", "fp16-onnx")


class CalibrationFeed:
    """Calibration batches in device buffers allocated once, and the cache TensorRT writes (TensorRT < 10)."""

    def __init__(self, x: np.ndarray, batch_size: int, cache: bytes | None, cuda: CudaMemory,
                 lam_count: int | None = None) -> None:
        self.cuda, self.batch_size, self.cache = cuda, batch_size, cache
        self.feeds: Iterator[dict[str, Any]] = calibration_feeds(x, batch_size, lam_count)
        first = next(calibration_feeds(x, batch_size, lam_count))
        self.stream = cuda.stream_create()
        self.device = {name: cuda.alloc(arr.nbytes) for name, arr in first.items()}
        self.written: bytes | None = None

    def next_batch(self, names: list[str]) -> list[int]:
        """Device pointers of the next batch, in `names` order; empty when calibration is done."""
        feed = next(self.feeds, None)
        if feed is None:
            return []
        for name, arr in feed.items():
            self.cuda.h2d_async(self.device[name], arr, self.stream)
        self.cuda.stream_sync(self.stream)
        return [self.device[name] for name in names]

    def free(self) -> None:
        for ptr in self.device.values():
            self.cuda.free(ptr)
        self.cuda.stream_destroy(self.stream)
        self.device = {}


def entropy_calibrator(feed: CalibrationFeed) -> trt.IInt8EntropyCalibrator2:
    """A trt.IInt8EntropyCalibrator2 reading from `feed` (implicit quantization, TensorRT < 10 only)."""
    import tensorrt as trt

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # required by the pybind base class

        def get_batch_size(self) -> int:
            return feed.batch_size

        def get_batch(self, names: list[str]) -> list[int]:
            return feed.next_batch(names)

        def read_calibration_cache(self) -> bytes | None:
            return feed.cache

        def write_calibration_cache(self, cache: Any) -> None:
            feed.written = bytes(cache)

    return EntropyCalibrator()


class TensorRTCompiler:
    """Builds engines on this GPU with one shared timing cache (later graphs skip most tactic timing)."""

    def __init__(self, workspace_mb: int = 1024) -> None:
        import tensorrt as trt

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
        import tensorrt as trt

        flags = 0
        if method in STRONGLY_TYPED_METHODS:
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        if self.major < 10:
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        return builder.create_network(flags)

    def compile(self, graph: bytes, label: str, method: str, profile: tuple[int, int, int],
                input_shape: tuple[int, ...], calibration: dict[str, Any] | None = None) -> bytes:
        """Serialized engine for `graph`; `calibration` = {x, batch, lam_count, cache} for int8-calibrator."""
        import tensorrt as trt

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
        feed = None
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
            feed = CalibrationFeed(calibration["x"], calibration["batch"], calibration.get("cache"), self.cuda,
                                   calibration.get("lam_count"))
            config.int8_calibrator = entropy_calibrator(feed)
        try:
            serialized = builder.build_serialized_network(network, config)
        finally:
            if feed is not None:
                self.calibration_cache = feed.written
                feed.free()
        if serialized is None:
            raise OatError(f"TensorRT failed to build {label} ({method}); see its log above. Try a larger "
                           "--workspace-mb or a smaller --max-shape")
        return bytes(memoryview(serialized))
