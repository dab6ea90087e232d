"""Inference backends behind one `Runner` interface; TensorRT is imported only when asked for."""

from __future__ import annotations

import importlib.util
from typing import Any

from oatdeploy.runtime.backends.base import Runner
from oatdeploy.runtime.errors import ArtifactError, OatError

BACKENDS = ("ort", "trt")


def tensorrt_installed() -> bool:
    """TensorRT's bindings are importable (a stubs-only `tensorrt` folder, as tensorrt-stubs installs, is not)."""
    spec = importlib.util.find_spec("tensorrt")
    return spec is not None and spec.origin not in (None, "namespace")


def require_tensorrt() -> None:
    """Say how to install TensorRT before anything tries to import it."""
    if not tensorrt_installed():
        raise OatError("TensorRT is not installed: on a Jetson use JetPack's python3-libnvinfer (apt), elsewhere "
                       '`pip install "oatdeploy[trt]"` (tensorrt and cuda-python); or use --backend ort')


def get_runner(backend: str, data: bytes, label: str, precision: str = "fp32", **options: Any) -> Runner:
    """A loaded runner for one artifact's verified bytes (ONNX for 'ort', an engine of `precision` for 'trt')."""
    if backend == "ort":
        from oatdeploy.runtime.backends.ort import OrtRunner

        try:
            return OrtRunner(data, label, **options)
        except (OatError, TypeError, ValueError):
            raise
        except Exception as e:  # ONNX Runtime's and protobuf's own errors for a truncated or garbage graph
            first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
            raise ArtifactError(f"{label} is not a loadable ONNX model ({first}); re-export the deployment") from None
    if backend == "trt":
        require_tensorrt()
        try:
            from oatdeploy.runtime.backends.trt import TrtRunner
        except ImportError as e:
            raise OatError(f"the TensorRT backend could not be loaded ({e}); reinstall TensorRT's Python "
                           "bindings (JetPack's python3-libnvinfer, or `pip install tensorrt`)") from None
        return TrtRunner(data, precision, label, **options)
    raise OatError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
