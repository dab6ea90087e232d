"""Latency, with its noise: variants timed round-robin over several rounds, each round's median kept.

A latency measured once moves a lot (the same graph gave 0.32 and 0.59 ms in one run; a p50 doubled over
half an hour on a quiet machine): clocks, caches and other work drift. Timing every variant in every round,
rather than one variant's runs back to back, spreads that drift over all of them, and the range of a
variant's round medians says how far its p50 can be trusted; `select` treats latencies whose ranges
overlap as tied. Torch-free, Python 3.8+.
"""

from __future__ import annotations

import math
import time
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from oatdeploy.runtime.backends.base import Runner

ROUNDS = 5
NOISY = 0.25  # a spread between rounds above this fraction of the p50 is reported
Job = Tuple[Runner, np.ndarray, Optional[int]]  # a runner, its input, its λ index


def timed_runs(runner: Runner, x: np.ndarray, lam_index: int | None, min_runs: int, min_seconds: float,
               max_runs: int) -> list[float]:
    """Milliseconds of at least `min_runs` calls and `min_seconds` of calling (at most `max_runs`)."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < min_seconds):
        t0 = time.perf_counter()
        runner.infer(x, lam_index)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def summary(rounds: Sequence[Sequence[float]]) -> dict[str, Any]:
    """p50/p95 over every run, and each round's median (the spread between them is the noise)."""
    pooled = np.concatenate([np.asarray(r, dtype=np.float64) for r in rounds])
    return {"p50_ms": float(np.percentile(pooled, 50)), "p95_ms": float(np.percentile(pooled, 95)),
            "runs": int(pooled.size), "round_p50_ms": [float(np.median(r)) for r in rounds]}


def measure(runner: Runner, x: np.ndarray, lam_index: int | None = None, warmup: int = 10, min_runs: int = 50,
            min_seconds: float = 0.5, max_runs: int = 2000) -> dict[str, Any]:
    """One runner on its own: p50/p95 in milliseconds over at least `min_runs` runs and `min_seconds`."""
    for _ in range(warmup):
        runner.infer(x, lam_index)
    return summary([timed_runs(runner, x, lam_index, min_runs, min_seconds, max_runs)])


def interleaved(jobs: Sequence[Job], rounds: int = ROUNDS, warmup: int = 10, min_runs: int = 50,
                min_seconds: float = 0.5, max_runs: int = 2000, progress: bool = False) -> list[dict[str, Any]]:
    """Time every job in every round, round-robin (each round starting one job later), so slow drift and
    bursts of other work land on all of them; `min_runs`, `min_seconds` and `max_runs` are per job, split
    over the rounds. One summary per job, in order."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    for runner, x, lam_index in jobs:
        for _ in range(warmup):
            runner.infer(x, lam_index)
    per_round = (math.ceil(min_runs / rounds), min_seconds / rounds, max(1, max_runs // rounds))
    times: list[list[list[float]]] = [[] for _ in jobs]
    from tqdm import tqdm

    with tqdm(total=rounds * len(jobs), desc="profile", unit="run", disable=not progress) as bar:
        for r in range(rounds):
            for i in range(len(jobs)):
                j = (i + r) % len(jobs)
                runner, x, lam_index = jobs[j]
                times[j].append(timed_runs(runner, x, lam_index, *per_round))
                bar.update()
    return [summary(t) for t in times]


def spread(entry: dict[str, Any]) -> tuple[float, float] | None:
    """(lowest, highest) round median of a profile entry; None for a single round or an older profile."""
    medians = entry.get("round_p50_ms") or []
    return (min(medians), max(medians)) if len(medians) > 1 else None


def noisy(rows: Sequence[dict[str, Any]]) -> str | None:
    """A warning when some variant's round medians spread by more than NOISY of its p50, else None."""
    spreads = [(r, spread(r)) for r in rows]
    bad = [(r, s) for r, s in spreads if s is not None and (s[1] - s[0]) > NOISY * r["p50_ms"]]
    if not bad:
        return None
    row, (lo, hi) = max(bad, key=lambda rs: (rs[1][1] - rs[1][0]) / rs[0]["p50_ms"])
    return (f"latency is noisy here: {len(bad)} of {len(rows)} profiles moved by more than {NOISY:.0%} of their p50 "
            f"between rounds (worst: {row['id']} at batch {row['batch']}, round medians {lo:.3f}-{hi:.3f} ms, p50 "
            f"{row['p50_ms']:.3f} ms); select treats latencies within that spread as tied. For steadier numbers stop "
            "other work on this machine (on a Jetson pin the clocks: sudo jetson_clocks) and profile again, with "
            "more --rounds")
