"""Latency of one runner: warm-up, then timed runs until the median is stable enough to trust."""

from __future__ import annotations

import time

import numpy as np

from oatdeploy.runtime.backends.base import Runner


def measure(runner: Runner, x: np.ndarray, lam_index: int | None = None, warmup: int = 10, min_runs: int = 50,
            min_seconds: float = 0.5, max_runs: int = 2000) -> dict[str, float | int]:
    """p50/p95 in milliseconds over at least `min_runs` runs and `min_seconds` of timing."""
    for _ in range(warmup):
        runner.infer(x, lam_index)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < min_seconds):
        t0 = time.perf_counter()
        runner.infer(x, lam_index)
        times.append((time.perf_counter() - t0) * 1e3)
    arr = np.asarray(times)
    return {"p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95)), "runs": len(times)}
