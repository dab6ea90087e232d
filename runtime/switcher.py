"""Serve the variant that meets a budget; switch between preloaded variants without reloading anything.

Two locks with two jobs. The serving lock guards only the (variant, runner) pair that calls read and
the bookkeeping after a call: it is never held while loading, closing or running a model. The control
lock orders everything that changes what is served (`use`, `set_budget`, drift re-selection, `close`):
one of them at a time solves, loads what it needs outside the serving lock, then swaps the pair and the
budget together. So after `set_budget` returns, every call served satisfies that budget, and no serving
thread ever waits on a load. Every call's latency goes into a window; when the window's p95 leaves the
latency budget (a device that throttles when hot), the variant's observed latency replaces its profiled
one and a background thread re-solves; a load that fails there is reported (`errors`, the log), never
raised from a call whose inference succeeded.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np

from oatdeploy.runtime.backends.base import Runner, warn_if_unscaled
from oatdeploy.runtime.errors import OatError
from oatdeploy.runtime.selection import Budget, NoFeasibleVariant, Variant, pareto_front, select

log = logging.getLogger("oatdeploy.runtime")


class Switcher:
    """Thread-safe serving over a deployment's variants, `sw(x)` → logits of the current variant.

    Runners are keyed by artifact, so shared-mode variants of one width share one loaded graph. With
    `max_loaded`, at most that many artifacts stay loaded (least recently used go first; while a switch
    loads its target, one more); a runner still serving a call on another thread is closed only when
    that call returns, and counts as loaded until then: a switch waits for such calls rather than load past
    the cap.
    """

    def __init__(self, variants: Sequence[Variant], load: Callable[[Variant], Runner], budget: Budget,
                 max_loaded: int | None = None, window: int = 50, history: int = 0) -> None:
        """Serve `variants` (as one device, backend and precision see them) by runners that `load` builds, under
        `budget`; `window` calls of latency are watched for drift, the last `history` served ids are kept."""
        if max_loaded is not None and max_loaded < 1:
            raise OatError(f"max_loaded must be at least 1, got {max_loaded}")
        if window < 1:
            raise OatError(f"window must be at least 1 call, got {window}")
        self.variants = list(variants)
        self.by_id = {v.id: v for v in self.variants}
        self.budget = budget
        self.max_loaded = max_loaded
        self._factory = load
        self._lock = threading.Lock()
        self._control = threading.Lock()
        self._drained = threading.Condition(self._lock)  # a retired runner's last call returned
        self._runners: collections.OrderedDict[str, Runner] = collections.OrderedDict()
        self._inflight: collections.Counter[int] = collections.Counter()
        self._retired: dict[int, Runner] = {}
        self._window: collections.deque[float] = collections.deque(maxlen=window)
        self._closed = False
        self._reselecting = False
        self.served: collections.deque[str] | None = collections.deque(maxlen=history) if history else None
        self.observed: dict[str, float] = {}
        self.broken: dict[str, str] = {}
        self.errors: collections.deque[str] = collections.deque(maxlen=20)
        self.switches = 0
        first = self._initial()
        self._serving: tuple[Variant, Runner] = (first, self._factory(first))
        self._runners[first.path] = self._serving[1]
        for v in self._preload_order():
            if max_loaded is not None and len(self._runners) >= max_loaded:
                break
            if v.path not in self._runners:
                self._runners[v.path] = self._factory(v)

    @property
    def current(self) -> Variant:
        return self._serving[0]

    def _preload_order(self) -> list[Variant]:
        """Everything; under a memory cap, the Pareto-optimal variants (where re-selection lands) first."""
        front = pareto_front(self.variants)
        return front + [v for v in self.variants if v not in front]

    def _initial(self) -> Variant:
        """The budget's choice; with no budget, the best objective (or the last variant if there are no metrics)."""
        try:
            return self._solve(self.budget)
        except NoFeasibleVariant:
            raise
        except OatError:
            if self.budget.constrained:
                raise
            return self.variants[-1]

    def _solve(self, budget: Budget) -> Variant:
        """The budget's choice given what we observed, among variants whose load has not failed."""
        variants = [replace(v, latency_ms=max(v.latency_ms or 0.0, self.observed[v.id]), latency_spread_ms=None)
                    if v.id in self.observed else v for v in self.variants if v.id not in self.broken]
        return self.by_id[select(variants, budget).id]

    def _activate(self, v: Variant, budget: Budget | None = None) -> None:
        """Caller holds the control lock: load `v` if needed (outside the serving lock), then serve it from the
        next call on, storing `budget` in the same step; evicts beyond `max_loaded`."""
        with self._lock:
            if self._closed:
                raise OatError("the switcher is closed")
            runner = self._runners.get(v.path)
            if runner is not None:  # loaded: a reference swap, nothing to evict
                self._serve(v, runner, budget)
                return
            early = self._make_room()
        for victim in early:
            victim.close()
        try:
            runner = self._factory(v)
        except Exception as e:
            self.broken[v.id] = str(e)
            raise
        self.broken.pop(v.id, None)
        with self._lock:
            self._runners[v.path] = runner
            self._serve(v, runner, budget)
            victims = []
            while self.max_loaded is not None and len(self._runners) > self.max_loaded:
                path = next(p for p in self._runners if p != v.path)
                victims.append(self._retire(self._runners.pop(path)))
        for victim in victims:
            if victim is not None:
                victim.close()

    def _make_room(self) -> list[Runner]:
        """Caller holds the serving lock: retire idle runners (least recently used first, never the one serving)
        and wait for busy retired ones until loading one more keeps at most `max_loaded` + 1 open; returns the
        runners to close."""
        victims: list[Runner] = []
        if self.max_loaded is None:
            return victims
        while len(self._runners) + len(self._retired) > self.max_loaded and not self._closed:
            spare = next((p for p in self._runners if p != self._serving[0].path), None)
            if spare is None:
                self._drained.wait(timeout=1.0)  # a busy retired runner: its call returns soon
                continue
            victim = self._retire(self._runners.pop(spare))
            if victim is not None:
                victims.append(victim)
        return victims

    def _serve(self, v: Variant, runner: Runner, budget: Budget | None) -> None:
        """Caller holds the serving lock: `v` (with `runner`) serves the next call, under `budget` if given."""
        self._runners.move_to_end(v.path)
        if v.id != self._serving[0].id:
            self.switches += 1
            self._window.clear()
        self._serving = (v, runner)
        if budget is not None:
            self.budget = budget

    def _retire(self, runner: Runner) -> Runner | None:
        """Caller holds the serving lock: the runner to close now, or None if a call is using it (closed later)."""
        if self._inflight[id(runner)]:
            self._retired[id(runner)] = runner
            return None
        return runner

    def use(self, variant: Variant | str) -> Variant:
        """Serve `variant` from the next call on (a reference swap when it is loaded)."""
        vid = variant if isinstance(variant, str) else variant.id
        v = self.by_id.get(vid)
        if v is None:
            raise OatError(f"no variant {vid!r}; choose one of {', '.join(self.by_id)}")
        with self._control:
            self._activate(v)
        return v

    def set_budget(self, budget: Budget | None = None, **changes: Any) -> Variant:
        """Change the budget (a new `Budget`, or fields of the current one: max_latency_ms, min_robust_acc,
        min_clean_acc, objective, strict) and switch now.

        When it returns, every later call is served by a variant that meets the new budget; if nothing meets
        it, or the chosen variant cannot be loaded, it raises and the old budget and variant stay.
        """
        with self._control:
            new = Budget.of(budget if budget is not None else self.budget, **changes)
            chosen = self._solve(new)
            self._activate(chosen, new)
        return chosen

    def forget_drift(self) -> None:
        """Trust the profile again (e.g. once the device has cooled down) and re-select."""
        with self._control:
            with self._lock:
                self.observed.clear()
            self.broken.clear()
            if self.budget.constrained:
                self._activate(self._solve(self.budget))

    def __call__(self, x: np.ndarray, return_variant: bool = False) -> Any:
        """Logits of the current variant; with return_variant, also the variant that computed them."""
        warn_if_unscaled(x)
        with self._lock:
            if self._closed:
                raise OatError("the switcher is closed; create a new one with Deployment.switcher()")
            v, runner = self._serving
            self._inflight[id(runner)] += 1
        t0 = time.perf_counter()
        try:
            logits = runner.infer(x, v.lam_index)
        finally:
            self._finish(v, runner, (time.perf_counter() - t0) * 1e3)
        return (logits, v) if return_variant else logits

    def _finish(self, v: Variant, runner: Runner, elapsed_ms: float) -> None:
        """Account for a finished call: history, release, and (in the background) drift re-selection."""
        retired, drifted = None, False
        with self._lock:
            self._inflight[id(runner)] -= 1
            if not self._inflight[id(runner)]:
                del self._inflight[id(runner)]
                retired = self._retired.pop(id(runner), None)
                if retired is not None:
                    self._drained.notify_all()
            if self.served is not None:
                self.served.append(v.id)
            if v is self._serving[0]:
                drifted = self._watch(v, elapsed_ms)
            if drifted and not self._reselecting:
                self._reselecting = True
            else:
                drifted = False
        if retired is not None:
            retired.close()
        if drifted:
            threading.Thread(target=self._reselect, name="oatdeploy-reselect", daemon=True).start()

    def _watch(self, v: Variant, elapsed_ms: float) -> bool:
        """Caller holds the serving lock: True when the window's p95 left the budget (observed is updated)."""
        limit = self.budget.max_latency_ms
        self._window.append(elapsed_ms)
        if limit is None or len(self._window) < (self._window.maxlen or 0):
            return False
        if max(self._window) <= limit:  # then p95 is too; skips a ~20 µs percentile on almost every call
            return False
        p95 = float(np.percentile(np.fromiter(self._window, float), 95))
        if p95 <= limit:
            return False
        self.observed[v.id] = p95
        self._window.clear()
        return True

    def _reselect(self) -> None:
        """Background: re-solve with what was observed and switch; failures are reported, serving goes on."""
        try:
            with self._control:
                if self._closed:
                    return
                try:
                    chosen = self._solve(self.budget)
                except OatError as e:  # nothing meets the budget any more: keep serving the least bad choice
                    log.info("drift: keeping %s (%s)", self.current.id, e)
                    return
                if chosen.id != self.current.id:
                    self._activate(chosen)
        except Exception as e:
            message = f"drift re-selection could not switch variants: {e}"
            self.errors.append(message)
            log.warning(message)
        finally:
            with self._lock:
                self._reselecting = False

    def close(self) -> None:
        """Release every runner (a busy one when its call returns); later calls raise OatError."""
        with self._control, self._lock:
            self._closed = True
            idle = [r for r in (self._retire(runner) for runner in self._runners.values()) if r is not None]
            self._runners.clear()
        for runner in idle:
            runner.close()

    def __enter__(self) -> Switcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
