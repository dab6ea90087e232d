"""ONNX Runtime runner: CUDA when it really works here, CPU otherwise, without noisy fallbacks."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
from oatdeploy.runtime.backends.base import INPUT_NAME, LAM_INDEX_NAME, Runner


@functools.cache
def cuda_usable() -> bool:
    """onnxruntime-gpu lists the CUDA provider even with no GPU; ask for it only where a GPU answers."""
    import onnxruntime as ort
    from oatdeploy.runtime.device import gpu_name

    return "CUDAExecutionProvider" in ort.get_available_providers() and gpu_name() is not None


class OrtRunner(Runner):
    """One InferenceSession per artifact; `run` is thread-safe in ONNX Runtime."""

    name = "ort"

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None) -> None:
        import onnxruntime as ort

        super().__init__(path)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
        use_cuda = device == "cuda" or (device == "auto" and cuda_usable())
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if use_cuda else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        self.on_gpu = "CUDAExecutionProvider" in self.session.get_providers()
        self.takes_lambda = any(i.name == LAM_INDEX_NAME for i in self.session.get_inputs())

    def infer(self, x: np.ndarray, lam_index: int | None = None) -> np.ndarray:
        feed = {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)}
        if self.takes_lambda:
            if lam_index is None:
                raise ValueError(f"{self.path.name} is a shared graph: pass the λ index")
            feed[LAM_INDEX_NAME] = np.array([lam_index], dtype=np.int64)
        return self.session.run(None, feed)[0]
