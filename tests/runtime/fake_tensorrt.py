"""Stand-ins for what cannot run here: TensorRT and a CUDA device, with the names and call shapes of the real APIs.

`HostCudart` answers the cuda-python runtime calls oatdeploy makes (cudaMalloc, cudaMemcpyAsync, streams,
device properties) with host memory, and fails loudly on any copy that would leave its allocation: the
out-of-bounds GPU write of issue 10, made visible. `install_tensorrt` puts a `tensorrt` module in
sys.modules whose engines are ONNX models run by ONNX Runtime through those "device" buffers, with the
TensorRT 10 engine/context calls (`num_io_tensors`, `get_tensor_profile_shape`, `set_input_shape`,
`set_tensor_address`, `execute_async_v3`). mypy checks oatdeploy's real calls against tensorrt-stubs and
cuda-python's own signatures; these stand-ins let the logic around those calls run.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import json
import sys
import threading
import types
from typing import Any

import numpy as np
import onnxruntime as ort

MAGIC = b"FAKE-TRT-ENGINE\n"


class OutOfBounds(AssertionError):
    """A copy that would write or read past the end of a device buffer."""


class HostCudart:
    """cuda.bindings.runtime as oatdeploy calls it, backed by host memory."""

    class cudaError_t:
        cudaSuccess = 0
        cudaErrorInvalidValue = 1

    class cudaMemcpyKind:
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    class _Props:
        name = b"Fake GPU\x00"
        major, minor = 8, 7

    def __init__(self) -> None:
        self.buffers: dict[int, np.ndarray] = {}
        self.streams = 0
        self.lock = threading.Lock()

    def cudaGetDevice(self) -> tuple:
        return (0, 0)

    def cudaGetErrorString(self, err: int) -> tuple:
        return (0, b"invalid value")

    def cudaGetDeviceProperties(self, device: int) -> tuple:
        return (0, self._Props())

    def cudaMalloc(self, size: int) -> tuple:
        buf = np.zeros(size, dtype=np.uint8)
        with self.lock:
            self.buffers[buf.ctypes.data] = buf
        return (0, buf.ctypes.data)

    def cudaFree(self, ptr: int) -> tuple:
        with self.lock:
            self.buffers.pop(ptr)
        return (0,)

    def check(self, ptr: int, nbytes: int) -> None:
        with self.lock:
            for start, buf in self.buffers.items():
                if start <= ptr < start + buf.nbytes:
                    if ptr + nbytes > start + buf.nbytes:
                        raise OutOfBounds(f"copy of {nbytes} bytes at offset {ptr - start} into a device buffer of "
                                          f"{buf.nbytes} bytes")
                    return
        raise OutOfBounds(f"address {ptr:#x} is not in any device buffer")

    def cudaMemcpyAsync(self, dst: int, src: int, count: int, kind: int, stream: Any) -> tuple:
        self.check(dst if kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice else src, count)
        ctypes.memmove(dst, src, count)
        return (0,)

    def cudaStreamCreate(self) -> tuple:
        with self.lock:
            self.streams += 1
            return (0, self.streams)

    def cudaStreamSynchronize(self, stream: Any) -> tuple:
        return (0,)

    def cudaStreamDestroy(self, stream: Any) -> tuple:
        with self.lock:
            self.streams -= 1
        return (0,)


def fake_engine(onnx_model: bytes, profile: tuple = (1, 1, 4)) -> bytes:
    """What the fake compiler 'serializes': the batch profile and the ONNX graph the engine runs."""
    return MAGIC + json.dumps({"profile": list(profile)}).encode() + b"\n" + onnx_model


class FakeEngine:
    contexts_created = 0

    def __init__(self, data: bytes, cudart: HostCudart) -> None:
        header, model = data[len(MAGIC):].split(b"\n", 1)
        self.profile = json.loads(header)["profile"]
        self.session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        self.cudart = cudart
        self.io: dict[str, tuple[tuple, Any, str]] = {}
        for i in self.session.get_inputs():
            dtype = np.int64 if "int64" in i.type else np.float32
            self.io[i.name] = (tuple(-1 if isinstance(d, str) else d for d in i.shape), dtype, "INPUT")
        for o in self.session.get_outputs():
            self.io[o.name] = (tuple(-1 if isinstance(d, str) else d for d in o.shape), np.float32, "OUTPUT")
        self.names = list(self.io)

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    def get_tensor_name(self, i: int) -> str:
        return self.names[i]

    def get_tensor_shape(self, name: str) -> tuple:
        return self.io[name][0]

    def get_tensor_dtype(self, name: str) -> Any:
        return self.io[name][1]

    def get_tensor_mode(self, name: str) -> str:
        return self.io[name][2]

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list:
        sample = self.io[name][0][1:]
        return [(b, *sample) for b in self.profile]

    def create_execution_context(self) -> FakeContext:
        type(self).contexts_created += 1
        return FakeContext(self)


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine, self.addresses, self.shapes = engine, {}, {}

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = ptr
        return True

    def set_input_shape(self, name: str, shape: tuple) -> bool:
        spec = self.engine.io[name][0]
        low, high = self.engine.profile[0], self.engine.profile[2]
        if name == "input" and (tuple(shape[1:]) != tuple(spec[1:]) or not low <= shape[0] <= high):
            return False
        self.shapes[name] = tuple(shape)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        feed = {}
        for name, shape in self.shapes.items():
            dtype = np.dtype(self.engine.io[name][1])
            nbytes = int(np.prod(shape)) * dtype.itemsize
            self.engine.cudart.check(self.addresses[name], nbytes)
            feed[name] = np.frombuffer(ctypes.string_at(self.addresses[name], nbytes), dtype=dtype).reshape(shape)
        out = np.ascontiguousarray(self.engine.session.run(None, feed)[0], dtype=np.float32)
        self.engine.cudart.check(self.addresses["logits"], out.nbytes)
        ctypes.memmove(self.addresses["logits"], out.ctypes.data, out.nbytes)
        return True


def install_tensorrt(monkeypatch: Any, cudart: HostCudart, version: str = "10.3.0") -> types.ModuleType:
    """Put the stand-in `tensorrt` in sys.modules and route cuda-python calls to `cudart`."""
    trt = types.ModuleType("tensorrt")
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None, origin="fake-tensorrt")
    trt.__version__ = version

    class Logger:
        WARNING = 2

        def __init__(self, level: int = 2) -> None:
            self.level = level

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes) -> FakeEngine | None:
            return FakeEngine(bytes(data), cudart) if bytes(data).startswith(MAGIC) else None

    trt.Logger, trt.Runtime = Logger, Runtime
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.nptype = lambda dtype: dtype
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    from oatdeploy.runtime.backends import cuda

    monkeypatch.setattr(cuda, "cudart", cudart)
    return trt


class FakeCompiler:
    """Stands in for TensorRTCompiler: records what it was asked to build and returns fake engines."""

    def __init__(self, trt_version: str = "10.3.0") -> None:
        self.device = {"trt_version": trt_version, "device": "Fake GPU", "compute_capability": "8.7"}
        self.calls: list[dict[str, Any]] = []
        self.seed: bytes | None = None
        self.calibration_cache: bytes | None = None

    def use_timing_cache(self, data: bytes | None) -> None:
        self.seed = data

    def timing_cache(self) -> bytes | None:
        return b"timing:" + str(len(self.calls)).encode()

    def compile(self, graph: bytes, label: str, method: str, profile: tuple, input_shape: tuple,
                calibration: dict[str, Any] | None = None) -> bytes:
        self.calls.append({"label": label, "method": method, "graph": graph, "calibration": calibration})
        if method == "int8-calibrator":
            self.calibration_cache = b"scales:" + label.encode()
        return fake_engine(graph, profile)
