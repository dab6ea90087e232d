"""Parity check at export: run an exported graph under ONNX Runtime (CPU) and compare it with the supernet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from oatdeploy.runtime.backends.base import INPUT_NAME, LAM_INDEX_NAME
from oatdeploy.runtime.backends.ort import onnxruntime_module
from oatdeploy.runtime.errors import ArtifactError
from oatdeploy.runtime.manifest import Verification

DEFAULT_TOLERANCE = 1e-3  # absolute part, for logits near 0; folding itself is exact to ~1e-6
# The relative part: fp32 rounds each sum to ~6e-8 of its size and a deep graph adds up many, in another order
# than torch; 1e-5 of the largest |logit| is ~100x that, while a wrong fold or weight moves logits by percents.
RELATIVE_TOLERANCE = 1e-5


def cpu_session(path: str | Path) -> Any:
    """An ONNX Runtime session on the CPU (export checks there, whatever the machine serves with)."""
    ort = onnxruntime_module()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_graph(session: Any, x: np.ndarray, lam_index: int | None = None) -> np.ndarray:
    feed = {INPUT_NAME: x.astype(np.float32, copy=False)}
    if lam_index is not None:
        feed[LAM_INDEX_NAME] = np.array([lam_index], dtype=np.int64)
    return session.run(None, feed)[0]


def check_parity(session: Any, x: np.ndarray, reference: np.ndarray, label: str,
                 lam_index: int | None = None, tolerance: float = DEFAULT_TOLERANCE) -> Verification:
    """Max |Δlogit| and top-1 agreement against the supernet; raises when the graph is not the model, i.e. when
    max |Δlogit| > tolerance + RELATIVE_TOLERANCE × max |logit| (logits of 2,000 differ by 1e-3 in fp32)."""
    logits = run_graph(session, x, lam_index)
    diff = float(np.abs(logits - reference).max())
    agree = float((logits.argmax(1) == reference.argmax(1)).mean())
    scale = float(np.abs(reference).max()) if reference.size else 0.0
    allowed = tolerance + RELATIVE_TOLERANCE * scale
    if not diff <= allowed:
        raise ArtifactError(f"{label}: exported graph differs from the supernet by {diff:.3g} (tolerance {allowed:.3g}"
                            f" = {tolerance:g} + {RELATIVE_TOLERANCE:g} × max|logit| {scale:.3g}, top-1 agreement "
                            f"{agree:.3f}); the export is wrong, please report it")
    return Verification(diff, agree, len(x))
