"""The switcher under concurrency: a returned set_budget holds for every later call, no load under the serving
lock, failures reported without failing a served call; and its edge cases (cap of one, close, window, NaN)."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from oatdeploy.runtime import Budget, Deployment, NoFeasibleVariant, Switcher, Variant, select
from oatdeploy.runtime.backends.base import Runner
from oatdeploy.runtime.errors import OatError
from tests.runtime.deploykit import set_profile


def dep_key(folder: Path) -> str:
    return Deployment.load(folder).key()

# Budget A admits only the most accurate variant, budget B only the most robust: each excludes the other's choice.
BUDGET_A = {"min_clean_acc": 0.94, "min_robust_acc": None}
BUDGET_B = {"min_robust_acc": 0.73, "min_clean_acc": None}


def meets(v: Variant, budget: Budget) -> bool:
    return ((budget.min_clean_acc is None or v.clean_acc >= budget.min_clean_acc)
            and (budget.min_robust_acc is None or v.robust_acc >= budget.min_robust_acc))


class TrackedRunner(Runner):
    """A real ORT runner that fails loudly if it is used after being closed, or closed during a call."""

    def __init__(self, inner: Runner) -> None:
        self.inner, self.spec, self.closed = inner, inner.spec, False

    def infer(self, x: np.ndarray, lam_index: int | None = None) -> np.ndarray:
        assert not self.closed, "inference on a closed runner"
        out = self.inner.infer(x, lam_index)
        assert not self.closed, "runner closed while a call was in flight"
        return out

    def close(self) -> None:
        self.closed = True


def tracking_loader(dep: Deployment) -> tuple[Callable[[Variant], Runner], list[TrackedRunner]]:
    """A runner factory for the switcher that keeps every runner it made."""
    made: list[TrackedRunner] = []

    def loader(v: Variant) -> Runner:
        made.append(TrackedRunner(dep.runner(v)))
        return made[-1]

    return loader, made


def test_a_returned_set_budget_holds_for_every_later_call(folded: Path) -> None:
    dep = Deployment.load(folded)
    rng = random.Random(0)
    loads = []

    def loader(v: Variant) -> Runner:
        assert not (made and made[0]._lock.locked()), "a runner was loaded under the serving lock"
        time.sleep(rng.uniform(0, 0.02))
        loads.append(v.id)
        if len(loads) > 2 and rng.random() < 0.2:
            raise OSError("engine load failed (out of memory)")
        return TrackedRunner(dep.runner(v))

    made: list[Any] = []
    sw = Switcher(dep.variants, loader, Budget(**BUDGET_A), max_loaded=2, history=100_000)
    made.append(sw)
    x = dep.sample_input(1)
    stop = threading.Event()
    violations: list[str] = []
    failures: list[BaseException] = []
    book = threading.Lock()
    state = {"generation": 0, "changing": 0}

    def serve() -> None:
        try:
            while not stop.is_set():
                with book:
                    gen, changing, budget = state["generation"], state["changing"], sw.budget
                _, v = sw(x, return_variant=True)
                with book:
                    quiet = gen == state["generation"] and not changing
                if quiet and not meets(v, budget):
                    violations.append(f"{v.id} served under {budget}")
        except BaseException as e:  # reported by the main thread
            failures.append(e)

    rounds = threading.Barrier(2)
    quiet_points: list[str] = []

    def flip(budgets: list[dict[str, Any]], checker: bool) -> None:
        for i in range(40):
            rounds.wait()  # both flippers change the budget at once, every round
            with book:
                state["changing"] += 1
                state["generation"] += 1
            try:
                sw.set_budget(**budgets[i % 2])
            except OSError:
                pass  # the load failed: the old budget and variant stay, which is what is checked
            finally:
                with book:
                    state["changing"] -= 1
                    state["generation"] += 1
            rounds.wait()
            if checker:  # both returned: what serves must meet the stored budget, now and for later calls
                with book:
                    if not meets(sw.current, sw.budget):
                        quiet_points.append(f"{sw.current.id} serving under {sw.budget}")
                time.sleep(0.003)  # let the servers make calls under this budget

    servers = [threading.Thread(target=serve) for _ in range(6)]
    flippers = [threading.Thread(target=flip, args=([BUDGET_A, BUDGET_B], True)),
                threading.Thread(target=flip, args=([BUDGET_B, BUDGET_A], False))]
    for t in servers + flippers:
        t.start()
    for t in flippers:
        t.join()
    stop.set()
    for t in servers:
        t.join()
    assert not quiet_points, quiet_points[:5]
    assert not failures, failures[:3]
    assert not violations, violations[:5]
    assert meets(sw.current, sw.budget)
    assert len(sw.served) > 100


def test_drift_reselection_loads_off_the_serving_path_and_reports_failures(folded: Path) -> None:
    dep = Deployment.load(folded)
    ids = [v.id for v in dep.variants]
    set_profile(folded, dep.key(), {vid: 1.0 + i for i, vid in enumerate(ids)})
    dep = Deployment.load(folded)
    best = dep.select(max_latency_ms=50.0)
    held: list[bool] = []
    broken = {"on": False}

    class Slow(TrackedRunner):
        def infer(self, x: np.ndarray, lam_index: int | None = None) -> np.ndarray:
            time.sleep(0.06)  # 60 ms: over the 50 ms budget, as a throttled device is
            return super().infer(x, lam_index)

    def loader(v: Variant) -> Runner:
        held.append(bool(made) and made[0]._lock.locked())
        if broken["on"]:
            raise OSError("engine load failed")
        return Slow(dep.runner(v)) if v.id == best.id else TrackedRunner(dep.runner(v))

    made: list[Any] = []
    sw = Switcher(dep.variants, loader, Budget(max_latency_ms=50.0), window=3, max_loaded=1)
    made.append(sw)
    broken["on"] = True  # the variant drift re-selection picks cannot be loaded
    x = dep.sample_input(1)
    for _ in range(4):
        assert sw(x).shape == (1, 10)  # every call whose inference succeeded returns its logits
    deadline = time.monotonic() + 10
    while not sw.errors and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sw.errors and "engine load failed" in sw.errors[0] and sw.current.id == best.id
    broken["on"] = False
    sw.forget_drift()
    for _ in range(4):
        sw(x)
    while sw.current.id == best.id and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sw.current.id != best.id and sw.observed[best.id] > 50.0
    assert not any(held), "a runner was loaded while the serving lock was held"


def test_memory_cap_loads_fewer_and_never_closes_a_runner_in_use(folded: Path) -> None:
    dep = Deployment.load(folded)
    factory, made = tracking_loader(dep)
    sw = Switcher(dep.variants, factory, Budget(), max_loaded=2, history=1_000_000)
    assert len(made) == 2
    x = dep.sample_input(2)
    failures: list[BaseException] = []
    switched = threading.Event()  # workers keep serving until the switching has gone round twice (however the
    calls = [0] * 4               # scheduler interleaves the threads on a loaded machine)

    def serve(i: int) -> None:
        try:
            while calls[i] < 25 or not switched.is_set():
                sw(x)
                calls[i] += 1
        except BaseException as e:  # reported by the main thread
            failures.append(e)

    workers = [threading.Thread(target=serve, args=(i,)) for i in range(4)]
    for t in workers:
        t.start()
    for _ in range(2):
        for v in dep.variants:
            sw.use(v)
    switched.set()
    for t in workers:
        t.join()
    assert not failures, failures
    assert sum(not r.closed for r in made) <= 2 and len(made) > 2
    assert len(sw.served) == sum(calls) >= 100


def test_a_cap_of_one_keeps_one_runner(folded: Path) -> None:
    dep = Deployment.load(folded)
    loader, made = tracking_loader(dep)
    sw = Switcher(dep.variants, loader, Budget(), max_loaded=1)
    for v in dep.variants:
        sw.use(v)
        assert sw(dep.sample_input(1)).shape == (1, 10)
        assert sum(not r.closed for r in made) == 1 and len(sw._runners) == 1


def test_close_window_and_nan_budgets_are_clear_errors(folded: Path) -> None:
    dep = Deployment.load(folded)
    sw = dep.switcher()
    sw.close()
    with pytest.raises(OatError, match="closed"):
        sw(dep.sample_input(1))
    with pytest.raises(OatError, match="window"):
        dep.switcher(window=0)
    nan = float("nan")
    with pytest.raises(OatError, match="finite"):
        select(dep.variants, min_robust_acc=nan)
    with pytest.raises(OatError, match="finite"):
        dep.select(max_latency_ms=float("inf"))
    with pytest.raises(OatError, match="finite"):
        dep.switcher(min_clean_acc=nan)
    sw = dep.switcher()
    before = sw.current
    with pytest.raises(OatError, match="finite"):
        sw.set_budget(min_robust_acc=nan)
    assert sw.current is before and sw.budget.min_robust_acc is None


def test_cli_select_refuses_nan(folded: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "oatdeploy.cli", "select", str(folded), "--min-robust-acc", "nan"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "finite" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_switcher_is_thread_safe_while_switching(folded: Path) -> None:
    dep = Deployment.load(folded)
    x = dep.sample_input(4)
    expected = {}
    for v in dep.variants:
        with dep.runner(v) as r:
            expected[v.id] = r.infer(x, v.lam_index)
    sw = dep.switcher(history=10_000)
    errors: list[str] = []
    stop = threading.Event()

    seen: set[str] = set()
    deadline = time.monotonic() + 60

    def serve() -> None:
        # At least 40 calls each, and on until a switch was seen (a loaded machine can finish 40 calls
        # before the switcher's first load ends; the deadline only bounds a broken switcher).
        n = 0
        while n < 40 or (len(seen) < 2 and time.monotonic() < deadline):
            out, v = sw(x, return_variant=True)
            seen.add(v.id)
            n += 1
            if not np.array_equal(out, expected[v.id]):
                errors.append(v.id)

    def switch() -> None:
        i = 0
        while not stop.is_set():
            sw.use(dep.variants[i % len(dep.variants)])
            i += 1

    switcher_thread = threading.Thread(target=switch)
    switcher_thread.start()
    workers = [threading.Thread(target=serve) for _ in range(8)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    stop.set()
    switcher_thread.join()
    assert not errors and len(sw.served) >= 320 and sw.switches > 10
    assert len(set(sw.served)) > 1


class SlowRunner(Runner):
    """A real ORT runner that becomes slow, like a Jetson that throttles when hot."""

    def __init__(self, inner: Runner, delay_s: float) -> None:
        self.inner, self.delay_s, self.spec = inner, delay_s, inner.spec

    def infer(self, x: np.ndarray, lam_index: int | None = None) -> np.ndarray:
        time.sleep(self.delay_s)
        return self.inner.infer(x, lam_index)


def test_drift_reselects_when_p95_leaves_the_budget(folded: Path) -> None:
    set_profile(folded, dep_key(folded), {f"lam{lam:g}-w{w:g}": 1.0 for lam in (0, 0.4, 1) for w in (0.5, 1)})
    dep = Deployment.load(folded)
    budget = 50.0
    best = dep.select(max_latency_ms=budget, min_robust_acc=0.0)

    def factory(v: Variant) -> Runner:
        runner = dep.runner(v)
        return SlowRunner(runner, 0.06) if v.path == best.path else runner

    sw = Switcher(dep.variants, factory, Budget(max_latency_ms=budget, min_robust_acc=0.0), window=5)
    assert sw.current.id == best.id
    x = dep.sample_input(1)
    for _ in range(6):
        sw(x)
    deadline = time.monotonic() + 10  # re-selection runs in the background, off the serving path
    while sw.current.id == best.id and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sw.current.id != best.id and sw.observed[best.id] > budget
    sw.set_budget(min_robust_acc=0.0)  # the observed latency is remembered across budget changes
    assert sw.current.id != best.id


def test_set_budget_switches_now_and_keeps_the_old_budget_when_infeasible(folded: Path) -> None:
    dep = Deployment.load(folded)
    sw = dep.switcher(objective="clean", min_robust_acc=0.0)
    assert sw.current.id == dep.select(min_robust_acc=0.0).id
    top_ra = max(v.robust_acc for v in dep.variants)
    chosen = sw.set_budget(min_robust_acc=top_ra)
    assert sw.current is chosen and chosen.robust_acc == top_ra
    with pytest.raises(NoFeasibleVariant, match="robust accuracy binds"):
        sw.set_budget(min_robust_acc=1.01)
    assert sw.budget.min_robust_acc == top_ra and sw.current is chosen
    with pytest.raises(TypeError, match="unknown budget"):
        sw.set_budget(max_latency=3)


def test_busy_retired_runners_count_against_max_loaded(folded: Path) -> None:
    """#21: with max_loaded=1 under 24 threads, six runners were open at once (busy retired ones went uncounted)."""
    dep = Deployment.load(folded)
    book = threading.Lock()
    state = {"open": 0, "most": 0}

    class Counted(TrackedRunner):
        def __init__(self, inner: Runner) -> None:
            super().__init__(inner)
            with book:
                state["open"] += 1
                state["most"] = max(state["most"], state["open"])

        def infer(self, x: np.ndarray, lam_index: int | None = None) -> np.ndarray:
            time.sleep(0.01)  # a call in flight whenever the switch comes
            return super().infer(x, lam_index)

        def close(self) -> None:
            super().close()
            with book:
                state["open"] -= 1

    sw = Switcher(dep.variants, lambda v: Counted(dep.runner(v)), Budget(), max_loaded=1)
    x = dep.sample_input(1)
    stop = threading.Event()
    failures: list[BaseException] = []

    def serve() -> None:
        try:
            while not stop.is_set():
                sw(x)
        except BaseException as e:  # reported by the main thread
            failures.append(e)

    workers = [threading.Thread(target=serve) for _ in range(24)]
    for t in workers:
        t.start()
    try:
        for _ in range(3):
            for v in dep.variants:
                sw.use(v)
    finally:
        stop.set()
        for t in workers:
            t.join()
    sw.close()
    assert not failures, failures
    assert state["most"] <= 2, f"{state['most']} runners open at once with max_loaded=1 (one more while loading)"
    assert state["open"] == 0
