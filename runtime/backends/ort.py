"""ONNX Runtime runner: CUDA when it really works here, CPU otherwise, without noisy fallbacks."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from oatdeploy.runtime.backends.base import INPUT_NAME, LAM_INDEX_NAME, Runner

QUIET = 3  # ORT log severity: errors only (its warnings about unused providers are noise to a user)
SILENT = 4  # fatal only: for the CUDA probe, whose failure is an expected answer, not an error


def _probe_model() -> bytes:
    """A one-node Identity graph: the cheapest thing a CUDA session can be asked to load."""
    from onnx import TensorProto, helper

    value = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("x", "y")]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", value[:1], value[1:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


@functools.cache
def cuda_usable() -> bool:
    """onnxruntime-gpu lists the CUDA provider even with no GPU or CUDA libraries: load a session and see."""
    import onnxruntime as ort

    from oatdeploy.runtime.device import gpu_name

    if "CUDAExecutionProvider" not in ort.get_available_providers() or gpu_name() is None:
        return False
    opts = ort.SessionOptions()
    opts.log_severity_level = SILENT
    ort.set_default_logger_severity(SILENT)
    try:
        session = ort.InferenceSession(_probe_model(), opts, providers=["CUDAExecutionProvider"])
        return "CUDAExecutionProvider" in session.get_providers()
    except Exception:  # any failure to bring CUDA up means: serve on the CPU
        return False
    finally:
        ort.set_default_logger_severity(QUIET)


class OrtRunner(Runner):
    """One InferenceSession per artifact; `run` is thread-safe in ONNX Runtime."""

    name = "ort"

    def __init__(self, path: str | Path, device: str = "auto", threads: int | None = None) -> None:
        import onnxruntime as ort

        super().__init__(path)
        if device not in ("auto", "cuda", "cpu"):
            raise ValueError(f"device must be auto, cuda or cpu, got {device!r}")
        opts = ort.SessionOptions()
        opts.log_severity_level = QUIET
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
