"""TensorRT runner: one deserialized engine, a small pool of execution contexts, device buffers sized once.

Written against the name-based TensorRT API (`num_io_tensors`, `set_input_shape`, `execute_async_v3`),
which TensorRT 8.5 (JetPack 5) through 10.x share; `tensorrt` is imported only when a runner is built.
The runner is given the engine's bytes, already hashed by the caller, and the precision of the engine that
`Deployment` chose for this device (the compatibility check happens there, once). Each call checks its
input against the engine's profile before anything is copied, then borrows one of at most `contexts`
execution contexts (each with its stream and max-batch buffers); a thread that finds them all busy waits.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from oatdeploy.runtime.backends.base import INPUT_NAME, LAM_INDEX_NAME, OUTPUT_NAME, InputSpec, Runner
from oatdeploy.runtime.backends.cuda import CudaMemory, get_cuda
from oatdeploy.runtime.errors import ArtifactError, OatError

if TYPE_CHECKING:
    import tensorrt as trt

DEFAULT_CONTEXTS = 2  # a Jetson shares 4-8 GB between CPU and GPU: contexts and their buffers are kept few


def rebuild_hint(precision: str) -> str:
    return f"rebuild on this device: oatdeploy build-engines DEPLOY --precision {precision}"


class _Slot:
    """One execution context with its stream and buffers; used by one call at a time."""

    def __init__(self, context: trt.IExecutionContext, stream: int, device: dict[str, int],
                 output: np.ndarray) -> None:
        self.context, self.stream, self.device, self.output = context, stream, device, output


class TrtRunner(Runner):
    """Serve one engine from several threads through a bounded pool of execution contexts."""

    name = "trt"

    def __init__(self, engine: bytes, precision: str = "fp32", label: str = "engine", contexts: int = DEFAULT_CONTEXTS,
                 lam_count: int | None = None, cuda: CudaMemory | None = None) -> None:
        import tensorrt as trt

        if contexts < 1:
            raise OatError(f"contexts must be at least 1, got {contexts}")
        self.label, self.precision = label, precision
        self.cuda = cuda or get_cuda()
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(engine)
        if self.engine is None:
            raise ArtifactError(f"TensorRT could not load {label} (corrupted, or built by another TensorRT or GPU); "
                                f"{rebuild_hint(self.precision)}")
        self.io: dict[str, tuple[tuple[int, ...], Any, bool]] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = self.engine.get_tensor_shape(name)
            self.io[name] = (tuple(shape[d] for d in range(len(shape))),
                             np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))),
                             self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT)
        inputs = sorted(n for n, (_, _, is_in) in self.io.items() if is_in)
        if INPUT_NAME not in inputs or OUTPUT_NAME not in self.io or self.io[INPUT_NAME][1] != np.float32:
            raise ArtifactError(f"{label} has I/O {sorted(self.io)}, expected float32 '{INPUT_NAME}' -> "
                                f"'{OUTPUT_NAME}'; rebuild it from an oatdeploy export")
        low, _, high = self.engine.get_tensor_profile_shape(INPUT_NAME, 0)
        self.spec = InputSpec(self.io[INPUT_NAME][0][1:], min_batch=int(low[0]), max_batch=int(high[0]),
                              lam_count=lam_count, takes_lambda=LAM_INDEX_NAME in inputs)
        self.max_contexts = contexts
        self._free: list[_Slot] = []
        self._created = 0
        self._closed = False
        self._cond = threading.Condition()

    def _shape(self, name: str, batch: int) -> tuple[int, ...]:
        return tuple(batch if d < 0 else d for d in self.io[name][0])

    def _new_slot(self) -> _Slot:
        """A context with buffers for the largest batch, bound once (their addresses never change)."""
        context = self.engine.create_execution_context()
        if context is None:
            raise OatError(f"TensorRT could not create an execution context for {self.label} (out of GPU memory?)")
        stream = self.cuda.stream_create()
        device: dict[str, int] = {}
        for name, (_, dtype, _) in self.io.items():
            shape = (1,) if name == LAM_INDEX_NAME else self._shape(name, self.spec.max_batch or 1)
            device[name] = self.cuda.alloc(int(np.prod(shape)) * dtype.itemsize)
            context.set_tensor_address(name, device[name])
        output = np.empty(self._shape(OUTPUT_NAME, self.spec.max_batch or 1), dtype=self.io[OUTPUT_NAME][1])
        return _Slot(context, stream, device, output)

    def _free_slot(self, slot: _Slot) -> None:
        del slot.context  # a context goes before the buffers it points to
        for ptr in slot.device.values():
            self.cuda.free(ptr)
        self.cuda.stream_destroy(slot.stream)

    def _checkout(self) -> _Slot:
        with self._cond:
            while True:
                if self._closed:
                    raise OatError(f"{self.label}'s runner is closed")
                if self._free:
                    return self._free.pop()
                if self._created < self.max_contexts:
                    self._created += 1
                    break
                self._cond.wait()
        try:
            return self._new_slot()
        except BaseException:
            with self._cond:
                self._created -= 1
                self._cond.notify()
            raise

    def _checkin(self, slot: _Slot) -> None:
        with self._cond:
            if not self._closed:
                self._free.append(slot)
                self._cond.notify()
                return
            self._created -= 1
        self._free_slot(slot)

    @property
    def contexts(self) -> int:
        """Execution contexts alive now (at most `max_contexts`)."""
        return self._created

    def infer(self, x: np.ndarray, lam_index: int | None = None) -> np.ndarray:
        x = self.spec.check(self.label, x, lam_index)
        n = x.shape[0]
        feed = {INPUT_NAME: x}
        if self.spec.takes_lambda:
            feed[LAM_INDEX_NAME] = np.array([lam_index], dtype=self.io[LAM_INDEX_NAME][1])
        slot = self._checkout()
        try:
            for name, arr in feed.items():
                if not slot.context.set_input_shape(name, arr.shape):
                    raise OatError(f"TensorRT refused input shape {arr.shape} for {name} of {self.label}")
                self.cuda.h2d_async(slot.device[name], arr, slot.stream)
            if not slot.context.execute_async_v3(slot.stream):
                raise OatError(f"TensorRT failed to run {self.label}; see the TensorRT log above")
            out = slot.output[:n]
            self.cuda.d2h_async(out, slot.device[OUTPUT_NAME], slot.stream)
            self.cuda.stream_sync(slot.stream)
            return out.astype(np.float32, copy=True)
        finally:
            self._checkin(slot)

    def close(self) -> None:
        """Free idle contexts now and busy ones when their call returns; later calls are refused."""
        with self._cond:
            self._closed = True
            idle, self._free = self._free, []
            self._created -= len(idle)
            self._cond.notify_all()
        for slot in idle:
            self._free_slot(slot)
