"""The one interface every inference backend implements (ONNX Runtime, TensorRT).

Numpy in, numpy out; a runner serves one artifact (an ONNX file or an engine). Shared-mode
artifacts take the λ index as a second input, so `infer` accepts it optionally.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

INPUT_NAME = "input"
LAM_INDEX_NAME = "lam_index"
OUTPUT_NAME = "logits"


class Runner(ABC):
    """Loads one artifact once; `infer` may be called many times, from several threads."""

    name: str = "base"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @abstractmethod
    def infer(self, x: np.ndarray, lam_index: int | None = None) -> np.ndarray:
        """float32 [N, C, H, W] (and the λ index for shared graphs) -> float32 logits [N, classes]."""

    def close(self) -> None:  # noqa: B027 - optional hook, most runners free on GC
        """Release device memory and handles."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
