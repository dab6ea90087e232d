"""Serve the variant that meets a budget; switch between preloaded variants without reloading anything.

Switching swaps one reference under a lock (microseconds). Every call's latency goes into a window;
when the window's p95 leaves the latency budget (a device that throttles when hot), the variant's
observed latency replaces its profiled one and the budget is re-solved.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from oatdeploy.runtime.backends.base import Runner
from oatdeploy.runtime.select import Variant, select

if TYPE_CHECKING:
    from oatdeploy.runtime.deployment import Deployment


class Switcher:
    """Thread-safe serving over a deployment's variants, `sw(x)` → logits of the current variant."""

    def __init__(self, deployment: Deployment, backend: str, precision: str = "fp32", batch: int | None = None,
                 max_latency_ms: float | None = None, min_robust_acc: float | None = None,
                 min_clean_acc: float | None = None, objective: str = "clean", max_loaded: int | None = None,
                 window: int = 50, history: int = 0,
                 runner_factory: Callable[[Variant], Runner] | None = None) -> None:
        self.deployment, self.backend, self.precision = deployment, backend, precision
        self.variants = deployment.variants_for(backend, precision, batch)
        self.by_id = {v.id: v for v in self.variants}
        self.budget: dict[str, Any] = {"max_latency_ms": max_latency_ms, "min_robust_acc": min_robust_acc,
                                       "min_clean_acc": min_clean_acc, "objective": objective}
        self._factory = runner_factory or (lambda v: deployment.runner(v, backend))
        self._lock = threading.Lock()
        self._runners: collections.OrderedDict[str, Runner] = collections.OrderedDict()
        self.max_loaded = max_loaded
        self._window: collections.deque[float] = collections.deque(maxlen=window)
        self.served: collections.deque[str] = collections.deque(maxlen=history or None) if history else None
        self.observed: dict[str, float] = {}
        self.switches = 0
        for v in self.variants if max_loaded is None else []:
            self._runner_for(v)
        self.current = self._solve() if self._has_budget() else self.variants[-1]
        self._runner_for(self.current)

    def _has_budget(self) -> bool:
        return any(self.budget[k] is not None for k in ("max_latency_ms", "min_robust_acc", "min_clean_acc"))

    def _runner_for(self, v: Variant) -> Runner:
        """Preloaded runners are shared by variants of one artifact (shared mode); LRU beyond max_loaded."""
        runner = self._runners.get(v.artifact)
        if runner is None:
            runner = self._factory(v)
            self._runners[v.artifact] = runner
            while self.max_loaded is not None and len(self._runners) > self.max_loaded:
                _, old = self._runners.popitem(last=False)
                old.close()
        self._runners.move_to_end(v.artifact)
        return runner

    def _solve(self) -> Variant:
        variants = [replace(v, latency_ms=max(v.latency_ms or 0.0, self.observed[v.id]))
                    if v.id in self.observed else v for v in self.variants]
        return self.by_id[select(variants, **self.budget).id]

    def use(self, variant: Variant | str) -> Variant:
        """Serve `variant` from the next call on."""
        v = self.by_id[variant if isinstance(variant, str) else variant.id]
        with self._lock:
            self._runner_for(v)
            if v.id != self.current.id:
                self.switches += 1
                self._window.clear()
            self.current = v
        return v

    def set_budget(self, **budget: Any) -> Variant:
        """Change the budget (max_latency_ms, min_robust_acc, min_clean_acc, objective) and switch now."""
        unknown = set(budget) - set(self.budget)
        if unknown:
            raise TypeError(f"unknown budget fields {sorted(unknown)}; use {sorted(self.budget)}")
        with self._lock:
            self.budget.update(budget)
            chosen = self._solve()
        return self.use(chosen)

    def __call__(self, x: np.ndarray, return_variant: bool = False) -> np.ndarray | tuple[np.ndarray, Variant]:
        with self._lock:
            v = self.current
            runner = self._runners[v.artifact]
        t0 = time.perf_counter()
        logits = runner.infer(x, v.lam_index)
        elapsed = (time.perf_counter() - t0) * 1e3
        self._record(v, elapsed)
        return (logits, v) if return_variant else logits

    def _record(self, v: Variant, elapsed_ms: float) -> None:
        limit = self.budget["max_latency_ms"]
        with self._lock:
            if self.served is not None:
                self.served.append(v.id)
            if v.id != self.current.id:
                return
            self._window.append(elapsed_ms)
            if limit is None or len(self._window) < self._window.maxlen:
                return
            p95 = float(np.percentile(np.fromiter(self._window, float), 95))
            if p95 <= limit:
                return
            self.observed[v.id] = p95
            self._window.clear()
            try:
                chosen = self._solve()
            except Exception:
                return
            self._runner_for(chosen)
            if chosen.id != self.current.id:
                self.switches += 1
                self.current = chosen

    def close(self) -> None:
        with self._lock:
            for r in self._runners.values():
                r.close()
            self._runners.clear()

    def __enter__(self) -> Switcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
