"""Budget selection over a deployment's variants, and their Pareto front. Pure data, no backends."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from oatdeploy.errors import OatError

OBJECTIVES = ("clean", "robust")


class NoFeasibleVariant(OatError):
    """No variant meets the budget; the message names the binding constraint and the closest variant."""


@dataclass(frozen=True)
class Variant:
    """One (λ, width) as the runtime sees it: accuracy for the precision served, latency on this device.

    `path` is the artifact that serves it, relative to the deployment folder; shared-mode variants of one
    width share it and differ by `lam_index`.
    """

    id: str
    lam: float
    width: float
    clean_acc: float | None
    robust_acc: float | None
    latency_ms: float | None
    path: str
    lam_index: int | None = None
    sha256: str | None = None

    def describe(self) -> str:
        def fmt(v: float | None, spec: str) -> str:
            return "n/a" if v is None else format(v, spec)

        return (f"{self.id} (SA {fmt(self.clean_acc, '.3f')}, RA {fmt(self.robust_acc, '.3f')}, "
                f"p50 {fmt(self.latency_ms, '.3f')} ms)")


LIMITS = {"latency": "max_latency_ms", "robust accuracy": "min_robust_acc", "clean accuracy": "min_clean_acc"}


def _violations(v: Variant, max_latency_ms: float | None, min_robust_acc: float | None,
                min_clean_acc: float | None) -> dict[str, float]:
    """How far a variant is from each given constraint (0 when met; latency relative, accuracy absolute)."""
    gaps: dict[str, float] = {}
    if max_latency_ms is not None:
        gaps["latency"] = max(0.0, _latency(v) - max_latency_ms) / max(max_latency_ms, 1e-9)
    if min_robust_acc is not None:
        gaps["robust accuracy"] = max(0.0, min_robust_acc - (v.robust_acc if v.robust_acc is not None else -1))
    if min_clean_acc is not None:
        gaps["clean accuracy"] = max(0.0, min_clean_acc - (v.clean_acc if v.clean_acc is not None else -1))
    return gaps


def _infeasible(variants: Sequence[Variant], budget: dict[str, float | None]) -> NoFeasibleVariant:
    """Name what binds: a constraint no variant meets even alone, else those the closest variant misses."""
    asked = ", ".join(f"{k}={v:g}" for k, v in budget.items() if v is not None)
    gaps = [_violations(v, *budget.values()) for v in variants]
    alone = [name for name in gaps[0] if all(g[name] > 0 for g in gaps)]
    if alone:
        name = alone[0]
        best = min(zip(variants, gaps), key=lambda vg: vg[1][name])[0]
        return NoFeasibleVariant(f"no variant meets the budget ({asked}): {name} binds, no variant reaches it "
                                 f"even alone; the closest is {best.describe()}; relax {LIMITS[name]}")
    closest, gap = min(zip(variants, gaps), key=lambda vg: sum(vg[1].values()))
    binding = [name for name, g in gap.items() if g > 0]
    verb = "binds" if len(binding) == 1 else "bind"
    return NoFeasibleVariant(f"no variant meets the budget ({asked}): {' and '.join(binding)} {verb}; "
                             f"the closest is {closest.describe()}; relax the budget")


def check_budget(max_latency_ms: float | None = None, min_robust_acc: float | None = None,
                 min_clean_acc: float | None = None, objective: str = "clean") -> dict[str, float | None]:
    """The budget as numbers, or one OatError: a NaN or infinite limit would silently admit or exclude everything."""
    if objective not in OBJECTIVES:
        raise OatError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    budget = {"max_latency_ms": max_latency_ms, "min_robust_acc": min_robust_acc, "min_clean_acc": min_clean_acc}
    for name, value in budget.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise OatError(f"{name} must be a finite number, got {value!r}")
        if name == "max_latency_ms" and value <= 0:
            raise OatError(f"max_latency_ms must be above 0, got {value!r}")
    return budget


def select(variants: Sequence[Variant], max_latency_ms: float | None = None, min_robust_acc: float | None = None,
           min_clean_acc: float | None = None, objective: str = "clean") -> Variant:
    """Best SA (or RA) among variants within the budget; ties go to the lower latency."""
    budget = check_budget(max_latency_ms, min_robust_acc, min_clean_acc, objective)
    if not variants:
        raise NoFeasibleVariant("the deployment has no variants")
    if max_latency_ms is not None and all(v.latency_ms is None for v in variants):
        raise OatError("a latency budget needs a latency profile for this device; run `oatdeploy profile DEPLOY`")
    if all((v.clean_acc if objective == "clean" else v.robust_acc) is None for v in variants):
        raise OatError("the manifest has no accuracy metrics; export after `oatdeploy eval` or with --evaluate")
    feasible = [v for v in variants if not any(_violations(v, *budget.values()).values())]
    if not feasible:
        raise _infeasible(variants, budget)

    def score(v: Variant) -> tuple[float, float]:
        acc = v.clean_acc if objective == "clean" else v.robust_acc
        return (acc if acc is not None else -1.0, -_latency(v))

    return max(feasible, key=score)


def pareto_front(variants: Sequence[Variant]) -> list[Variant]:
    """Variants no other beats on SA, RA and latency at once (higher SA/RA, lower latency), by latency."""

    def key(v: Variant) -> tuple[float, float, float]:
        return (v.clean_acc or 0.0, v.robust_acc or 0.0, -_latency(v))

    def dominates(a: Variant, b: Variant) -> bool:
        ka, kb = key(a), key(b)
        return all(x >= y for x, y in zip(ka, kb)) and ka != kb

    front = [v for v in variants if not any(dominates(o, v) for o in variants)]
    return sorted(front, key=lambda v: (_latency(v), v.id))


def _latency(v: Variant) -> float:
    """Unprofiled counts as slowest: it cannot be promised to meet anything."""
    return float("inf") if v.latency_ms is None else v.latency_ms
