"""ONNX Runtime runner: CUDA when it really works here, CPU otherwise, without noisy fallbacks.

The session is built from bytes the caller has already hashed (never re-read from disk), and a graph whose
weights live in external data files is refused: those files would be read unchecked.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from oatdeploy.runtime.backends.base import INPUT_NAME, LAM_INDEX_NAME, InputSpec, Runner
from oatdeploy.runtime.errors import ArtifactError, OatError

QUIET = 3  # ORT log severity: errors only (its warnings about unused providers are noise to a user)
SILENT = 4  # fatal only: for the CUDA probe, whose failure is an expected answer, not an error


def onnxruntime_module() -> Any:
    """`onnxruntime`, or one line naming the extra that brings it (it is an extra: the CPU and the CUDA builds share
    one module, and a Jetson takes JetPack's build)."""
    try:
        import onnxruntime
    except ImportError:
        raise OatError("ONNX Runtime is not installed: pip install 'oatdeploy[cpu]' (or 'oatdeploy[gpu]' for CUDA; "
                       "on a Jetson, JetPack's onnxruntime-gpu wheel: docs/jetson.md)") from None
    return onnxruntime


def _probe_model() -> bytes:
    """A one-node Identity graph: the cheapest thing a CUDA session can be asked to load."""
    from onnx import TensorProto, helper

    value = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1]) for n in ("x", "y")]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", value[:1], value[1:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


@functools.lru_cache(maxsize=None)
def cuda_usable() -> bool:
    """onnxruntime-gpu lists the CUDA provider even with no GPU or CUDA libraries: load a session and see."""
    ort = onnxruntime_module()

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


def external_data_tensors(model: bytes) -> list:
    """Names of the tensors a serialized ONNX model keeps in external files (they would be read unhashed)."""
    import onnx

    proto = onnx.ModelProto()
    proto.ParseFromString(model)
    graphs, names = [proto.graph], []
    while graphs:
        graph = graphs.pop()
        tensors = list(graph.initializer)
        for node in graph.node:
            for attr in node.attribute:
                tensors += [attr.t] if attr.HasField("t") else []
                tensors += list(attr.tensors)
                graphs += ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)
        names += [t.name for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL]
    return names


class OrtRunner(Runner):
    """One InferenceSession per artifact; `run` is thread-safe in ONNX Runtime."""

    name = "ort"

    def __init__(self, model: bytes, label: str = "model.onnx", device: str = "auto", threads: int | None = None,
                 lam_count: int | None = None) -> None:
        ort = onnxruntime_module()

        if device not in ("auto", "cuda", "cpu"):
            raise ValueError(f"device must be auto, cuda or cpu, got {device!r}")
        self.label = label
        external = external_data_tensors(model)
        if external:
            raise ArtifactError(f"{label} keeps {len(external)} tensor(s) in external data files, which are not "
                                "covered by its sha256; re-export it with the weights inside the .onnx file")
        opts = ort.SessionOptions()
        opts.log_severity_level = QUIET
        if threads:
            opts.intra_op_num_threads = threads
        use_cuda = device == "cuda" or (device == "auto" and cuda_usable())
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if use_cuda else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(model, opts, providers=providers)
        self.on_gpu = "CUDAExecutionProvider" in self.session.get_providers()
        inputs = {i.name: i for i in self.session.get_inputs()}
        if INPUT_NAME not in inputs:
            raise ArtifactError(f"{label} has inputs {sorted(inputs)}, expected '{INPUT_NAME}'; re-export it")
        dims = inputs[INPUT_NAME].shape[1:]
        if not all(isinstance(d, int) for d in dims):
            raise ArtifactError(f"{label} has dynamic per-sample input dims {dims}; re-export it with oatdeploy")
        self.spec = InputSpec(tuple(dims), lam_count=lam_count, takes_lambda=LAM_INDEX_NAME in inputs)

    def infer(self, x: np.ndarray, lam_index: int | None = None) -> np.ndarray:
        feed: dict[str, Any] = {INPUT_NAME: self.spec.check(self.label, x, lam_index)}
        if self.spec.takes_lambda:
            feed[LAM_INDEX_NAME] = np.array([lam_index], dtype=np.int64)
        return self.session.run(None, feed)[0]
