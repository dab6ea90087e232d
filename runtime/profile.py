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
from typing import Any, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from oatdeploy.runtime.backends.base import Runner
from oatdeploy.runtime.manifest import Latency

ROUNDS = 5
NOISY = 0.25  # a spread between rounds above this fraction of the p50 is reported
Job = Tuple[Runner, np.ndarray, Optional[int]]  # a runner, its input, its λ index


class Measured(NamedTuple):
    """One variant's profile at one batch size, and the device key it is stored under."""

    id: str
    key: str
    latency: Latency

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "key": self.key, **self.latency.to_json()}


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


def summary(rounds: Sequence[Sequence[float]]) -> Latency:
    """p50/p95 over every run, and each round's median (the spread between them is the noise)."""
    pooled = np.concatenate([np.asarray(r, dtype=np.float64) for r in rounds])
    return Latency(p50_ms=float(np.percentile(pooled, 50)), p95_ms=float(np.percentile(pooled, 95)),
                   runs=int(pooled.size), round_p50_ms=[float(np.median(r)) for r in rounds])


def measure(runner: Runner, x: np.ndarray, lam_index: int | None = None, warmup: int = 10, min_runs: int = 50,
            min_seconds: float = 0.5, max_runs: int = 2000) -> Latency:
    """One runner on its own: p50/p95 in milliseconds over at least `min_runs` runs and `min_seconds`."""
    for _ in range(warmup):
        runner.infer(x, lam_index)
    return summary([timed_runs(runner, x, lam_index, min_runs, min_seconds, max_runs)])


def interleaved(jobs: Sequence[Job], rounds: int = ROUNDS, warmup: int = 10, min_runs: int = 50,
                min_seconds: float = 0.5, max_runs: int = 2000, progress: bool = False) -> list[Latency]:
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


def is_noisy(latency: Latency) -> bool:
    spread = latency.spread
    return spread is not None and spread[1] - spread[0] > NOISY * latency.p50_ms


def noisy(rows: Sequence[Measured]) -> str | None:
    """A warning when some variant's round medians spread by more than NOISY of its p50, else None."""
    bad = [r for r in rows if is_noisy(r.latency)]
    if not bad:
        return None

    def width(r: Measured) -> float:
        lo, hi = r.latency.spread or (0.0, 0.0)
        return (hi - lo) / r.latency.p50_ms

    row = max(bad, key=width)
    lo, hi = row.latency.spread or (0.0, 0.0)
    return (f"latency is noisy here: {len(bad)} of {len(rows)} profiles moved by more than {NOISY:.0%} of their p50 "
            f"between rounds (worst: {row.id} at batch {row.latency.batch}, round medians {lo:.3f}-{hi:.3f} ms, p50 "
            f"{row.latency.p50_ms:.3f} ms); select treats latencies within that spread as tied. For steadier numbers "
            "stop other work on this machine (on a Jetson pin the clocks: sudo jetson_clocks) and profile again, with "
            "more --rounds")


def format_profile(rows: Sequence[Measured]) -> str:
    """One line per (variant, batch): p50, the lowest-highest round median (the noise), p95, how many runs."""
    head = (f"{'variant':<14} {'batch':>5} {'p50 ms':>8} {'rounds p50 ms':>17} {'spread':>7} {'p95 ms':>8} "
            f"{'runs':>6}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lat, s = r.latency, r.latency.spread
        between = "n/a" if s is None else f"{s[0]:.3f}-{s[1]:.3f}"
        width = "n/a" if s is None else f"{(s[1] - s[0]) / lat.p50_ms:.0%}"
        flag = " !" if is_noisy(lat) else ""
        lines.append(f"{r.id:<14} {lat.batch:>5} {lat.p50_ms:>8.3f} {between:>17} {width:>7} "
                     f"{lat.p95_ms:>8.3f} {lat.runs:>6}{flag}")
    lines.append("rounds p50: the lowest and highest median of the profiling rounds; spread: their gap over the "
                 f"p50 (! above {NOISY:.0%}); select treats p50s within the spread as tied")
    return "\n".join(lines)
