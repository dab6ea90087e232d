"""Device memory, copies and streams for the TensorRT runner and calibrator, from whichever CUDA binding is here.

Order of preference: cuda-python (NVIDIA's own binding, small, no torch: what a Jetson should use), then
torch.cuda, then CuPy. All three serve one interface so callers never branch on the binding. Torch-free
unless torch is the binding actually picked.
"""

from __future__ import annotations

import importlib
import importlib.util
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from oatdeploy.errors import OatError

BINDINGS = ("cuda-python", "torch", "cupy")
INSTALL_HINT = ("no usable CUDA Python binding here: `pip install cuda-python` (or install torch with CUDA, or "
                "cupy) to run TensorRT engines")


class CudaMemory(ABC):
    """One binding's view of the current CUDA device. Pointers and stream handles are plain ints."""

    name: str = "base"

    @abstractmethod
    def alloc(self, nbytes: int) -> int:
        """Device buffer of `nbytes`; returns its address."""

    @abstractmethod
    def free(self, ptr: int) -> None: ...

    @abstractmethod
    def h2d_async(self, ptr: int, host: np.ndarray, stream: int) -> None:
        """Copy a C-contiguous host array to the device buffer at `ptr`, ordered on `stream`."""

    @abstractmethod
    def d2h_async(self, host: np.ndarray, ptr: int, stream: int) -> None:
        """Copy `host.nbytes` from the device buffer at `ptr` into the C-contiguous `host`, ordered on `stream`."""

    @abstractmethod
    def stream_create(self) -> int: ...

    @abstractmethod
    def stream_sync(self, stream: int) -> None: ...

    @abstractmethod
    def stream_destroy(self, stream: int) -> None: ...

    @abstractmethod
    def device_name(self) -> str: ...

    @abstractmethod
    def compute_capability(self) -> str:
        """'major.minor', e.g. '8.7' on a Jetson Orin; engines are tied to it."""


def _import_cudart() -> Any:
    """cuda-python ≥ 12.6 exposes `cuda.bindings.runtime`; older releases `cuda.cudart` (gone in 13)."""
    try:
        return importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        return importlib.import_module("cuda.cudart")


class CudaPythonMemory(CudaMemory):
    name = "cuda-python"

    def __init__(self) -> None:
        self.rt = _import_cudart()
        self.device = self._call(self.rt.cudaGetDevice())
        self._streams: dict[int, Any] = {}

    def _call(self, result: tuple[Any, ...]) -> Any:
        """cuda-python returns (error, value...); raise on error, return the value(s)."""
        err, *values = result
        if err != self.rt.cudaError_t.cudaSuccess:
            _, text = self.rt.cudaGetErrorString(err)
            raise OatError(f"CUDA error {err}: {text.decode() if isinstance(text, bytes) else text}; check the GPU "
                           "and driver (nvidia-smi, or tegrastats on a Jetson)")
        if not values:
            return None
        return values[0] if len(values) == 1 else tuple(values)

    def alloc(self, nbytes: int) -> int:
        return int(self._call(self.rt.cudaMalloc(max(nbytes, 1))))

    def free(self, ptr: int) -> None:
        self._call(self.rt.cudaFree(ptr))

    def h2d_async(self, ptr: int, host: np.ndarray, stream: int) -> None:
        self._call(self.rt.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes,
                                           self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self._streams[stream]))

    def d2h_async(self, host: np.ndarray, ptr: int, stream: int) -> None:
        self._call(self.rt.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes,
                                           self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._streams[stream]))

    def stream_create(self) -> int:
        stream = self._call(self.rt.cudaStreamCreate())
        handle = int(stream)
        self._streams[handle] = stream
        return handle

    def stream_sync(self, stream: int) -> None:
        self._call(self.rt.cudaStreamSynchronize(self._streams[stream]))

    def stream_destroy(self, stream: int) -> None:
        self._call(self.rt.cudaStreamDestroy(self._streams.pop(stream)))

    def _props(self) -> Any:
        return self._call(self.rt.cudaGetDeviceProperties(self.device))

    def device_name(self) -> str:
        name = self._props().name
        return (name.decode(errors="replace") if isinstance(name, bytes) else str(name)).rstrip("\x00").strip()

    def compute_capability(self) -> str:
        props = self._props()
        return f"{props.major}.{props.minor}"


class TorchMemory(CudaMemory):
    """torch.cuda: buffers are uint8 tensors kept alive here, addressed by their data pointer."""

    name = "torch"

    def __init__(self) -> None:
        import torch

        if not torch.cuda.is_available():
            raise OatError("torch is installed but sees no CUDA GPU; " + INSTALL_HINT)
        self.torch = torch
        self._buffers: dict[int, Any] = {}
        self._streams: dict[int, Any] = {}

    def alloc(self, nbytes: int) -> int:
        buf = self.torch.empty(max(nbytes, 1), dtype=self.torch.uint8, device="cuda")
        self._buffers[buf.data_ptr()] = buf
        return buf.data_ptr()

    def free(self, ptr: int) -> None:
        self._buffers.pop(ptr, None)

    def h2d_async(self, ptr: int, host: np.ndarray, stream: int) -> None:
        src = self.torch.from_numpy(host.reshape(-1).view(np.uint8))
        with self.torch.cuda.stream(self._streams[stream]):
            self._buffers[ptr][: host.nbytes].copy_(src, non_blocking=True)

    def d2h_async(self, host: np.ndarray, ptr: int, stream: int) -> None:
        dst = self.torch.from_numpy(host.reshape(-1).view(np.uint8))
        with self.torch.cuda.stream(self._streams[stream]):
            dst.copy_(self._buffers[ptr][: host.nbytes], non_blocking=False)

    def stream_create(self) -> int:
        stream = self.torch.cuda.Stream()
        self._streams[stream.cuda_stream] = stream
        return int(stream.cuda_stream)

    def stream_sync(self, stream: int) -> None:
        self._streams[stream].synchronize()

    def stream_destroy(self, stream: int) -> None:
        self._streams.pop(stream, None)

    def device_name(self) -> str:
        return self.torch.cuda.get_device_name()

    def compute_capability(self) -> str:
        major, minor = self.torch.cuda.get_device_capability()
        return f"{major}.{minor}"


class CupyMemory(CudaMemory):
    name = "cupy"

    def __init__(self) -> None:
        import cupy

        self.cupy = cupy
        self._buffers: dict[int, Any] = {}
        self._streams: dict[int, Any] = {}

    def alloc(self, nbytes: int) -> int:
        mem = self.cupy.cuda.alloc(max(nbytes, 1))
        self._buffers[int(mem.ptr)] = mem
        return int(mem.ptr)

    def free(self, ptr: int) -> None:
        self._buffers.pop(ptr, None)

    def h2d_async(self, ptr: int, host: np.ndarray, stream: int) -> None:
        self._buffers[ptr].copy_from_host_async(host.ctypes.data, host.nbytes, self._streams[stream])

    def d2h_async(self, host: np.ndarray, ptr: int, stream: int) -> None:
        self._buffers[ptr].copy_to_host_async(host.ctypes.data, host.nbytes, self._streams[stream])

    def stream_create(self) -> int:
        stream = self.cupy.cuda.Stream(non_blocking=True)
        self._streams[int(stream.ptr)] = stream
        return int(stream.ptr)

    def stream_sync(self, stream: int) -> None:
        self._streams[stream].synchronize()

    def stream_destroy(self, stream: int) -> None:
        self._streams.pop(stream, None)

    def _props(self) -> dict[str, Any]:
        return self.cupy.cuda.runtime.getDeviceProperties(self.cupy.cuda.Device().id)

    def device_name(self) -> str:
        name = self._props()["name"]
        return name.decode(errors="replace") if isinstance(name, bytes) else str(name)

    def compute_capability(self) -> str:
        props = self._props()
        return f"{props['major']}.{props['minor']}"


_MODULES = {"cuda-python": ("cuda.bindings.runtime", "cuda.cudart"), "torch": ("torch",), "cupy": ("cupy",)}
_CLASSES: dict[str, type[CudaMemory]] = {"cuda-python": CudaPythonMemory, "torch": TorchMemory, "cupy": CupyMemory}


def available_bindings() -> list[str]:
    """The bindings importable here, in order of preference (nothing is initialised)."""
    found = []
    for name, modules in _MODULES.items():
        for module in modules:
            try:
                if importlib.util.find_spec(module) is not None:
                    found.append(name)
                    break
            except (ImportError, ValueError):  # a parent package ('cuda') that is absent
                continue
    return found


def get_cuda(prefer: str | None = None) -> CudaMemory:
    """The first binding that is installed, or `prefer`; raises OatError naming `pip install cuda-python`."""
    if prefer is not None and prefer not in BINDINGS:
        raise OatError(f"unknown CUDA binding {prefer!r}; choose one of {', '.join(BINDINGS)}")
    names = [prefer] if prefer else available_bindings()
    if not names or names[0] not in available_bindings():
        raise OatError(INSTALL_HINT)
    return _CLASSES[names[0]]()
