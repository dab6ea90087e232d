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

from oatdeploy.errors import OatError
from oatdeploy.runtime.backends.base import Runner
from oatdeploy.runtime.select import NoFeasibleVariant, Variant, pareto_front, select

if TYPE_CHECKING:
    from oatdeploy.runtime.deployment import Deployment

BUDGET_FIELDS = ("max_latency_ms", "min_robust_acc", "min_clean_acc", "objective")


class Switcher:
    """Thread-safe serving over a deployment's variants, `sw(x)` → logits of the current variant.

    Runners are keyed by artifact, so shared-mode variants of one width share one loaded graph. With
    `max_loaded`, at most that many artifacts stay loaded (least recently used go first); a runner
    still serving a call on another thread is closed only when that call returns.
    """

    def __init__(self, deployment: Deployment, backend: str, precision: str = "fp32", batch: int | None = None,
                 max_latency_ms: float | None = None, min_robust_acc: float | None = None,
                 min_clean_acc: float | None = None, objective: str = "clean", max_loaded: int | None = None,
                 window: int = 50, history: int = 0,
                 runner_factory: Callable[[Variant], Runner] | None = None) -> None:
        if max_loaded is not None and max_loaded < 1:
            raise OatError(f"max_loaded must be at least 1, got {max_loaded}")
        self.deployment, self.backend, self.precision = deployment, backend, precision
        self.variants = deployment.variants_for(backend, precision, batch)
        self.by_id = {v.id: v for v in self.variants}
        self.budget: dict[str, Any] = {"max_latency_ms": max_latency_ms, "min_robust_acc": min_robust_acc,
                                       "min_clean_acc": min_clean_acc, "objective": objective}
        self.max_loaded = max_loaded
        self._factory = runner_factory or (lambda v: deployment.runner(v, backend))
        self._lock = threading.Lock()
        self._runners: collections.OrderedDict[str, Runner] = collections.OrderedDict()
        self._inflight: collections.Counter[int] = collections.Counter()
        self._retired: dict[int, Runner] = {}
        self._window: collections.deque[float] = collections.deque(maxlen=window)
        self.served: collections.deque[str] | None = collections.deque(maxlen=history) if history else None
        self.observed: dict[str, float] = {}
        self.switches = 0
        self.current = self._initial()
        for v in [self.current, *self._preload_order()]:
            if max_loaded is not None and len(self._runners) >= max_loaded:
                break
            self._load(v)

    def _preload_order(self) -> list[Variant]:
        """Everything; under a memory cap, the Pareto-optimal variants (where re-selection lands) first."""
        front = pareto_front(self.variants)
        return front + [v for v in self.variants if v not in front]

    def _initial(self) -> Variant:
        """The budget's choice; with no budget, the best objective (or the last variant if there are no metrics)."""
        try:
            return self._solve()
        except NoFeasibleVariant:
            raise
        except OatError:
            if self._has_budget():
                raise
            return self.variants[-1]

    def _has_budget(self) -> bool:
        return any(self.budget[k] is not None for k in ("max_latency_ms", "min_robust_acc", "min_clean_acc"))

    def _load(self, v: Variant) -> Runner:
        """The runner serving `v`, loading it outside the lock so serving never waits on a load."""
        with self._lock:
            runner = self._runners.get(v.path)
            if runner is not None:
                self._runners.move_to_end(v.path)
                return runner
        fresh = self._factory(v)
        with self._lock:
            runner = self._runners.get(v.path)
            if runner is None:
                self._insert(v.path, fresh)
                return fresh
        fresh.close()
        return runner

    def _insert(self, path: str, runner: Runner) -> None:
        """Caller holds the lock. Evicts the least recently used artifacts beyond the cap, never the current one."""
        self._runners[path] = runner
        self._runners.move_to_end(path)
        while self.max_loaded is not None and len(self._runners) > self.max_loaded:
            victim = next((p for p in self._runners if p not in (path, self.current.path)), None)
            if victim is None:
                break
            self._retire(self._runners.pop(victim))

    def _retire(self, runner: Runner) -> None:
        """Close an evicted runner now, or when the last call using it returns. Caller holds the lock."""
        if self._inflight[id(runner)]:
            self._retired[id(runner)] = runner
        else:
            runner.close()

    def _solve(self) -> Variant:
        variants = [replace(v, latency_ms=max(v.latency_ms or 0.0, self.observed[v.id]))
                    if v.id in self.observed else v for v in self.variants]
        return self.by_id[select(variants, **self.budget).id]

    def use(self, variant: Variant | str) -> Variant:
        """Serve `variant` from the next call on (a reference swap when it is loaded)."""
        vid = variant if isinstance(variant, str) else variant.id
        if vid not in self.by_id:
            raise OatError(f"no variant {vid!r}; choose one of {', '.join(self.by_id)}")
        v = self.by_id[vid]
        if self.max_loaded is not None:
            self._load(v)
        with self._lock:
            self._switch_to(v)
        return v

    def _switch_to(self, v: Variant) -> None:
        """Caller holds the lock. Under a memory cap `v` may not be loaded (evicted by another thread's `use`, or
        a drift re-selection): then it loads here, and serving waits for that one load."""
        if v.path not in self._runners:
            self._insert(v.path, self._factory(v))
        self._runners.move_to_end(v.path)
        if v.id != self.current.id:
            self.switches += 1
            self._window.clear()
            self.current = v

    def set_budget(self, **budget: Any) -> Variant:
        """Change the budget (max_latency_ms, min_robust_acc, min_clean_acc, objective) and switch now."""
        unknown = set(budget) - set(BUDGET_FIELDS)
        if unknown:
            raise TypeError(f"unknown budget fields {sorted(unknown)}; use {list(BUDGET_FIELDS)}")
        with self._lock:
            new = {**self.budget, **budget}
            old, self.budget = self.budget, new
            try:
                chosen = self._solve()
            except OatError:
                self.budget = old
                raise
        return self.use(chosen)

    def forget_drift(self) -> None:
        """Trust the profile again (e.g. once the device has cooled down) and re-select."""
        with self._lock:
            self.observed.clear()
            chosen = self._solve() if self._has_budget() else None
        if chosen is not None:
            self.use(chosen)

    def __call__(self, x: np.ndarray, return_variant: bool = False) -> np.ndarray | tuple[np.ndarray, Variant]:
        """Logits of the current variant; with return_variant, also the variant that computed them."""
        with self._lock:
            v = self.current
            runner = self._runners[v.path]
            self._inflight[id(runner)] += 1
        t0 = time.perf_counter()
        try:
            logits = runner.infer(x, v.lam_index)
        finally:
            elapsed = (time.perf_counter() - t0) * 1e3
            self._finish(v, runner, elapsed)
        return (logits, v) if return_variant else logits

    def _finish(self, v: Variant, runner: Runner, elapsed_ms: float) -> None:
        """Account for a finished call: history, release, and drift re-selection."""
        with self._lock:
            self._inflight[id(runner)] -= 1
            if not self._inflight[id(runner)]:
                del self._inflight[id(runner)]
                retired = self._retired.pop(id(runner), None)
                if retired is not None:
                    retired.close()
            if self.served is not None:
                self.served.append(v.id)
            if v.id == self.current.id:
                self._watch(v, elapsed_ms)

    def _watch(self, v: Variant, elapsed_ms: float) -> None:
        """Caller holds the lock: when the window's p95 leaves the budget, re-solve with what we observed."""
        limit = self.budget["max_latency_ms"]
        self._window.append(elapsed_ms)
        if limit is None or len(self._window) < (self._window.maxlen or 0):
            return
        if max(self._window) <= limit:  # then p95 is too; skips a ~20 µs percentile on almost every call
            return
        p95 = float(np.percentile(np.fromiter(self._window, float), 95))
        if p95 <= limit:
            return
        self.observed[v.id] = p95
        self._window.clear()
        try:
            chosen = self._solve()
        except OatError:  # nothing meets the budget any more: keep serving the least bad choice we have
            return
        self._switch_to(chosen)

    def close(self) -> None:
        with self._lock:
            for runner in self._runners.values():
                self._retire(runner)
            self._runners.clear()

    def __enter__(self) -> Switcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
