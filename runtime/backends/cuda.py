"""Device memory, copies and streams for the TensorRT runner and calibrator, through cuda-python.

cuda-python is NVIDIA's own binding: pip-installable on a Jetson (no compile, no torch) and on a
workstation. Pointers and stream handles are plain ints to callers. Every copy states the size of the
buffer it writes into, and a copy larger than that buffer is refused before the driver sees it.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

import numpy as np

from oatdeploy.runtime.errors import OatError

INSTALL_HINT = ("cuda-python is not installed: `pip install 'cuda-python<13'` for CUDA 12 (JetPack 6) or "
                "`pip install 'cuda-python>=13'` for CUDA 13 (JetPack 7); JetPack 5 (CUDA 11.4): 'cuda-python<12'")


def _legacy_cudart() -> Any:
    """cuda-python < 12.6 (JetPack 5's 11.x) names the runtime API `cuda.cudart`; None when neither is there."""
    try:
        return importlib.import_module("cuda.cudart")
    except ImportError:
        return None


try:  # cuda-python >= 12.6; type-checked against its own signatures (.ci/type_stubs.py)
    from cuda.bindings import runtime as cudart
except ImportError:
    cudart = _legacy_cudart()


class CudaMemory:
    """The current CUDA device, as the runner uses it: buffers with known sizes, async copies on streams."""

    def __init__(self) -> None:
        if cudart is None:
            raise OatError(INSTALL_HINT)
        self.device = int(self._call(cudart.cudaGetDevice()))
        self._sizes: dict[int, int] = {}
        self._streams: dict[int, Any] = {}
        self._lock = threading.Lock()

    def _call(self, result: Any) -> Any:
        """cuda-python returns (error, value...); raise on error, return the value(s)."""
        err, *values = result
        if err != cudart.cudaError_t.cudaSuccess:
            _, text = cudart.cudaGetErrorString(err)
            raise OatError(f"CUDA error {err}: {text.decode() if isinstance(text, bytes) else text}; check the GPU "
                           "and driver (nvidia-smi, or tegrastats on a Jetson)")
        if not values:
            return None
        return values[0] if len(values) == 1 else tuple(values)

    def alloc(self, nbytes: int) -> int:
        ptr = int(self._call(cudart.cudaMalloc(max(nbytes, 1))))
        with self._lock:
            self._sizes[ptr] = nbytes
        return ptr

    def free(self, ptr: int) -> None:
        with self._lock:
            self._sizes.pop(ptr, None)
        self._call(cudart.cudaFree(ptr))

    def _fits(self, ptr: int, host: np.ndarray) -> None:
        size = self._sizes.get(ptr)
        if size is None or host.nbytes > size or not host.flags.c_contiguous:
            raise OatError(f"refusing a copy of {host.nbytes} bytes into a device buffer of {size} bytes "
                           "(an oatdeploy bug: inputs are checked before this; please report it)")

    def h2d_async(self, ptr: int, host: np.ndarray, stream: int) -> None:
        """Copy a C-contiguous host array into the device buffer at `ptr` (never past its end)."""
        self._fits(ptr, host)
        self._call(cudart.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes,
                                           cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._streams[stream]))

    def d2h_async(self, host: np.ndarray, ptr: int, stream: int) -> None:
        """Copy `host.nbytes` from the device buffer at `ptr` into the C-contiguous `host`."""
        self._fits(ptr, host)
        self._call(cudart.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes,
                                           cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._streams[stream]))

    def stream_create(self) -> int:
        stream = self._call(cudart.cudaStreamCreate())
        handle = int(stream)
        with self._lock:
            self._streams[handle] = stream
        return handle

    def stream_sync(self, stream: int) -> None:
        self._call(cudart.cudaStreamSynchronize(self._streams[stream]))

    def stream_destroy(self, stream: int) -> None:
        with self._lock:
            handle = self._streams.pop(stream)
        self._call(cudart.cudaStreamDestroy(handle))

    def _props(self) -> Any:
        return self._call(cudart.cudaGetDeviceProperties(self.device))

    def device_name(self) -> str:
        name = self._props().name
        return (name.decode(errors="replace") if isinstance(name, bytes) else str(name)).rstrip("\x00").strip()

    def compute_capability(self) -> str:
        """'major.minor', e.g. '8.7' on a Jetson Orin; engines are tied to it."""
        props = self._props()
        return f"{props.major}.{props.minor}"


def get_cuda() -> CudaMemory:
    """The CUDA device through cuda-python; raises OatError naming the pip line when it is absent."""
    return CudaMemory()
