"""Inference backends behind one `Runner` interface; TensorRT is imported only when asked for."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from oatdeploy.errors import OatError
from oatdeploy.runtime.backends.base import Runner

BACKENDS = ("ort", "trt")


def require_tensorrt() -> None:
    """Say how to install TensorRT before anything tries to import it."""
    if importlib.util.find_spec("tensorrt") is None:
        raise OatError("TensorRT is not installed: on a Jetson use JetPack's python3-libnvinfer (apt), elsewhere "
                       '`pip install "oatdeploy[trt]"` (tensorrt and cuda-python); or use --backend ort')


def get_runner(backend: str, path: str | Path, **options: Any) -> Runner:
    """A loaded runner for one artifact (an ONNX file for 'ort', an engine for 'trt')."""
    if backend == "ort":
        from oatdeploy.runtime.backends.ort import OrtRunner

        return OrtRunner(path, **options)
    if backend == "trt":
        require_tensorrt()
        try:
            from oatdeploy.runtime.backends.trt import TrtRunner
        except ImportError as e:
            raise OatError(f"the TensorRT backend could not be loaded ({e}); reinstall TensorRT's Python "
                           "bindings (JetPack's python3-libnvinfer, or `pip install tensorrt`)") from None
        return TrtRunner(path, **options)
    raise OatError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
