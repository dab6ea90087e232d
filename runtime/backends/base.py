"""The one interface every inference backend implements (ONNX Runtime, TensorRT), and its input check.

Numpy in, numpy out; a runner serves one artifact (ONNX bytes or an engine). Shared-mode artifacts take
the λ index as a second input, so `infer` accepts it optionally. Every runner checks its input against
what the artifact takes (rank, per-sample shape, batch range, dtype, λ index range) before anything is
copied anywhere: a wrong-shaped array must never reach a device buffer sized for the right one.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod

import numpy as np

from oatdeploy.runtime.errors import InputError, OatWarning

INPUT_NAME = "input"
LAM_INDEX_NAME = "lam_index"
OUTPUT_NAME = "logits"


MAX_INPUT_BYTES = 1 << 30  # one call's input; activations take many times this, so a larger batch is refused


def check_batch_size(n: int, sample: tuple[int, ...], what: str) -> None:
    """Refuse a batch whose float32 input exceeds MAX_INPUT_BYTES, before anything is allocated for it."""
    per = 4 * int(np.prod(sample, dtype=np.int64))
    if n * per > MAX_INPUT_BYTES:
        raise InputError(f"a batch of {n:,} images of {' × '.join(map(str, sample))} is {n * per / 2**30:.1f} GiB of "
                         f"input, more than the {MAX_INPUT_BYTES / 2**30:g} GiB {what} takes in one call; use "
                         f"batches of at most {max(1, MAX_INPUT_BYTES // per):,}")


class InputSpec:
    """What one artifact accepts: float32 [N, *sample] with min_batch ≤ N ≤ max_batch, and a λ index if shared."""

    def __init__(self, sample: tuple[int, ...], min_batch: int = 1, max_batch: int | None = None,
                 lam_count: int | None = None, takes_lambda: bool = False) -> None:
        self.sample, self.min_batch, self.max_batch = tuple(int(d) for d in sample), min_batch, max_batch
        self.lam_count, self.takes_lambda = lam_count, takes_lambda

    def describe(self) -> str:
        top = "N" if self.max_batch is None else f"{self.min_batch}..{self.max_batch}"
        return f"float32 [{top}, {', '.join(map(str, self.sample))}]"

    def check(self, name: str, x: object, lam_index: int | None) -> np.ndarray:
        """`x` as a C-contiguous float32 array, or one InputError naming what is wrong and what is expected."""
        if not isinstance(x, np.ndarray):
            raise InputError(f"{name} takes a numpy array {self.describe()}, got {type(x).__name__}")
        if x.dtype != np.float32:
            hint = ("scale images to [0, 1] first: x.astype(np.float32) / 255" if x.dtype.kind in "uib"
                    else "convert with x.astype(np.float32)")
            raise InputError(f"{name} takes float32 input, got {x.dtype}; {hint}")
        if x.ndim != 1 + len(self.sample) or tuple(x.shape[1:]) != self.sample:
            raise InputError(f"{name} takes {self.describe()} (N, C, H, W), got shape {tuple(x.shape)}; "
                             "check the layout (NCHW, not NHWC), channels and resolution")
        n = x.shape[0]
        check_batch_size(n, self.sample, name)
        if n < self.min_batch or (self.max_batch is not None and n > self.max_batch):
            raise InputError(f"batch of {n} is outside what {name} takes ({self.describe()}); split the batch, "
                             "or rebuild the engine with a larger --max-shape (oatdeploy build-engines)")
        if self.takes_lambda:
            if lam_index is None:
                raise InputError(f"{name} is a shared graph: pass the λ index")
            if isinstance(lam_index, bool) or not isinstance(lam_index, (int, np.integer)) or lam_index < 0 or (
                    self.lam_count is not None and lam_index >= self.lam_count):
                valid = f"0..{self.lam_count - 1}" if self.lam_count else "a non-negative integer"
                raise InputError(f"λ index {lam_index!r} is out of range for {name}; use {valid}")
        if not np.isfinite(x).all():
            warnings.warn(f"input to {name} holds NaN or infinite values, so its logits will too; check how the "
                          "images were read and scaled", OatWarning, stacklevel=3)
        return np.ascontiguousarray(x)


UNSCALED = ("input values above 1: the models take pixels scaled to [0, 1] (8-bit pixels: x / 255), and images "
            "scaled to 0-255 are served as given, with wrong answers")


def warn_if_unscaled(x: object, stacklevel: int = 3) -> None:
    """Float pixels left at 0-255 are a valid float32 array that every check accepts and every model gets wrong:
    say so (once per calling line, Python's default for a warning). Called where users hand in images (the
    switcher, `Supernet.predict`), not in the runners' timed path."""
    if isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.size and float(np.max(x)) > 1.01:
        warnings.warn(UNSCALED, OatWarning, stacklevel=stacklevel)


class Runner(ABC):
    """Loads one artifact once; `infer` may be called many times, from several threads."""

    name: str = "base"
    label: str = "runner"
    spec: InputSpec

    @abstractmethod
    def infer(self, x: np.ndarray, lam_index: int | None = None) -> np.ndarray:
        """float32 [N, C, H, W] (and the λ index for shared graphs) -> float32 logits [N, classes]."""

    def close(self) -> None:  # noqa: B027 - optional hook, most runners free on GC
        """Release device memory and handles."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
