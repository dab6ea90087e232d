"""TensorRT runner: one deserialized engine, an execution context per thread, device buffers allocated once.

Written against the TensorRT 10 Python API (name-based I/O tensors and `execute_async_v3`); `tensorrt`
is imported only when a runner is built, so this module imports without it. An engine is tied to the
TensorRT version and the GPU it was built on; a mismatch is refused before deserializing, with the fix.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from oatdeploy.errors import ArtifactError, OatError
from oatdeploy.runtime.backends.base import INPUT_NAME, LAM_INDEX_NAME, OUTPUT_NAME, Runner
from oatdeploy.runtime.backends.cuda_mem import CudaMemory, get_cuda
from oatdeploy.runtime.manifest import FILENAME

MATCHED = ("trt_version", "device", "compute_capability")


def rebuild_hint(deploy: str | Path, precision: str) -> str:
    return f"rebuild on this device: oatdeploy build-engines {deploy} --precision {precision}"


def current_device(cuda: CudaMemory | None = None) -> dict[str, str]:
    """What an engine built here records: TensorRT version, GPU name (as latency keys name it), SM version."""
    import tensorrt as trt

    from oatdeploy.runtime.device import gpu_name

    cuda = cuda or get_cuda()
    return {"trt_version": str(trt.__version__), "device": gpu_name() or cuda.device_name(),
            "compute_capability": cuda.compute_capability()}


def engine_mismatches(recorded: dict[str, Any], here: dict[str, str]) -> list[str]:
    """'what: built for X, here Y' for each of TensorRT version, device and compute capability that differs."""
    labels = {"trt_version": "TensorRT", "device": "GPU", "compute_capability": "compute capability"}
    return [f"{labels[k]} {recorded.get(k)!s} at build, {here.get(k)!s} here" for k in MATCHED
            if str(recorded.get(k)) != str(here.get(k))]


def check_engine(recorded: dict[str, Any], here: dict[str, str], deploy: str | Path) -> None:
    """Refuse an engine built with another TensorRT or on another GPU; pure, so it is testable without either."""
    diffs = engine_mismatches(recorded, here)
    if diffs:
        raise ArtifactError(f"engine {recorded.get('path')} does not fit this machine ({'; '.join(diffs)}); "
                            f"{rebuild_hint(deploy, recorded.get('precision', 'fp32'))}")


def recorded_entry(path: Path) -> tuple[Path, dict[str, Any]] | None:
    """The manifest entry for an engine at DEPLOY/engines/<name>.engine, if the deployment records it."""
    deploy = path.resolve().parent.parent
    manifest = deploy / FILENAME
    if not manifest.is_file():
        return None
    rel = path.resolve().relative_to(deploy).as_posix()
    for variant in json.loads(manifest.read_text()).get("variants", []):
        for entry in variant.get("engines") or []:
            if entry.get("path") == rel:
                return deploy, entry
    return None


class _ThreadState:
    """One thread's execution context, stream and buffers (a context must not run on two threads at once)."""

    def __init__(self, context: Any, stream: int, device: dict[str, int], host: dict[str, np.ndarray]) -> None:
        self.context, self.stream, self.device, self.host = context, stream, device, host


class TrtRunner(Runner):
    """Serve one engine; `infer` is safe from several threads (each gets its own context and buffers)."""

    name = "trt"

    def __init__(self, path: str | Path, recorded: dict[str, Any] | None = None, deploy: str | Path | None = None,
                 binding: str | None = None) -> None:
        import tensorrt as trt

        super().__init__(path)
        if not self.path.is_file():
            raise ArtifactError(f"engine {self.path} does not exist; build it with `oatdeploy build-engines DEPLOY`")
        if recorded is None and (found := recorded_entry(self.path)) is not None:
            deploy, recorded = found
        self.deploy = Path(deploy) if deploy else self.path.parent.parent
        self.cuda = get_cuda(binding)
        if recorded is not None:
            check_engine(recorded, current_device(self.cuda), self.deploy)
        self.precision = (recorded or {}).get("precision", "fp32")
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise ArtifactError(f"TensorRT could not load {self.path} (built by another TensorRT or GPU, or "
                                f"corrupted); {rebuild_hint(self.deploy, self.precision)}")
        self.inputs: dict[str, tuple[tuple[int, ...], Any]] = {}
        self.outputs: dict[str, tuple[tuple[int, ...], Any]] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            spec = (tuple(self.engine.get_tensor_shape(name)), np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))))
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs)[name] = spec
        if INPUT_NAME not in self.inputs or OUTPUT_NAME not in self.outputs:
            raise ArtifactError(f"{self.path} has I/O {sorted(self.inputs)} -> {sorted(self.outputs)}, expected "
                                f"'{INPUT_NAME}' -> '{OUTPUT_NAME}'; rebuild it from an oatdeploy export")
        self.takes_lambda = LAM_INDEX_NAME in self.inputs
        self.max_batch = int(self.engine.get_tensor_profile_shape(INPUT_NAME, 0)[2][0])
        self._local = threading.local()
        self._states: list[_ThreadState] = []
        self._lock = threading.Lock()

    def _shape(self, spec: tuple[int, ...], batch: int) -> tuple[int, ...]:
        return tuple(batch if d < 0 else d for d in spec)

    def _state(self) -> _ThreadState:
        """This thread's context with buffers for the largest batch, bound once (addresses never change)."""
        state = getattr(self._local, "state", None)
        if state is not None:
            return state
        with self._lock:  # contexts are created one at a time; each is then used by its thread only
            context = self.engine.create_execution_context()
        stream = self.cuda.stream_create()
        device: dict[str, int] = {}
        host: dict[str, np.ndarray] = {}
        for name, (spec, dtype) in {**self.inputs, **self.outputs}.items():
            host[name] = np.empty(self._shape(spec, self.max_batch), dtype=dtype)
            device[name] = self.cuda.alloc(host[name].nbytes)
            context.set_tensor_address(name, device[name])
        state = _ThreadState(context, stream, device, host)
        with self._lock:
            self._states.append(state)
        self._local.state = state
        return state

    def infer(self, x: np.ndarray, lam_index: int | None = None) -> np.ndarray:
        n = len(x)
        if not 1 <= n <= self.max_batch:
            raise OatError(f"batch of {n} outside this engine's profile (1..{self.max_batch}); rebuild with "
                           f"`oatdeploy build-engines {self.deploy} --batch 1,{min(n, 8)},{n}` or split the batch")
        if self.takes_lambda and lam_index is None:
            raise ValueError(f"{self.path.name} is a shared engine: pass the λ index")
        s = self._state()
        feed = {INPUT_NAME: np.ascontiguousarray(x, dtype=self.inputs[INPUT_NAME][1])}
        if self.takes_lambda:
            feed[LAM_INDEX_NAME] = np.array([lam_index], dtype=self.inputs[LAM_INDEX_NAME][1])
        for name, arr in feed.items():
            s.context.set_input_shape(name, arr.shape)
            self.cuda.h2d_async(s.device[name], arr, s.stream)
        if not s.context.execute_async_v3(s.stream):
            raise OatError(f"TensorRT failed to run {self.path.name}; see the TensorRT log above")
        out = s.host[OUTPUT_NAME][:n]
        self.cuda.d2h_async(out, s.device[OUTPUT_NAME], s.stream)
        self.cuda.stream_sync(s.stream)
        return out.astype(np.float32, copy=True)

    def close(self) -> None:
        with self._lock:
            states, self._states = self._states, []
        for s in states:
            s.context = None  # a context goes before the buffers it points to
            for ptr in s.device.values():
                self.cuda.free(ptr)
            self.cuda.stream_destroy(s.stream)
        self._local = threading.local()
