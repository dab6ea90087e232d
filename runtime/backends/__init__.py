"""Inference backends behind one `Runner` interface; TensorRT is imported only when asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oatdeploy.runtime.backends.base import Runner

from oatdeploy.errors import OatError

BACKENDS = ("ort", "trt")


def get_runner(backend: str, path: str | Path, **options: Any) -> Runner:
    """A loaded runner for one artifact (an ONNX file for 'ort', an engine for 'trt')."""
    if backend == "ort":
        from oatdeploy.runtime.backends.ort import OrtRunner

        return OrtRunner(path, **options)
    if backend == "trt":
        try:
            from oatdeploy.runtime.backends.trt import TrtRunner
        except ImportError as e:
            raise OatError(f"the TensorRT backend is unavailable ({e}); on a Jetson install JetPack's "
                           "python3-libnvinfer, elsewhere `pip install tensorrt cuda-python`") from None
        return TrtRunner(path, **options)
    raise OatError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
