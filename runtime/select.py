"""Budget selection over a deployment's variants, and their Pareto front. Pure data, no backends."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from oatdeploy.errors import OatError

OBJECTIVES = ("clean", "robust")


class NoFeasibleVariant(OatError):
    """No variant meets the budget; the message names the binding constraint and the closest variant."""


@dataclass(frozen=True)
class Variant:
    """One (λ, width) as the runtime sees it: accuracy for the precision served, latency on this device."""

    id: str
    lam: float
    width: float
    clean_acc: float | None
    robust_acc: float | None
    latency_ms: float | None
    artifact: str
    lam_index: int | None = None

    def describe(self) -> str:
        def fmt(v: float | None, spec: str) -> str:
            return "n/a" if v is None else format(v, spec)

        return (f"{self.id} (SA {fmt(self.clean_acc, '.3f')}, RA {fmt(self.robust_acc, '.3f')}, "
                f"p50 {fmt(self.latency_ms, '.3f')} ms)")


def _violations(v: Variant, max_latency_ms: float | None, min_robust_acc: float | None,
                min_clean_acc: float | None) -> dict[str, float]:
    """How far a variant is from each constraint it breaks (0 when met)."""
    gaps: dict[str, float] = {}
    if max_latency_ms is not None:
        gaps["latency"] = max(0.0, (v.latency_ms or float("inf")) - max_latency_ms) / max(max_latency_ms, 1e-9)
    if min_robust_acc is not None:
        gaps["robust accuracy"] = max(0.0, min_robust_acc - (v.robust_acc if v.robust_acc is not None else -1))
    if min_clean_acc is not None:
        gaps["clean accuracy"] = max(0.0, min_clean_acc - (v.clean_acc if v.clean_acc is not None else -1))
    return gaps


def select(variants: Sequence[Variant], max_latency_ms: float | None = None, min_robust_acc: float | None = None,
           min_clean_acc: float | None = None, objective: str = "clean") -> Variant:
    """Best SA (or RA) among variants within the budget; ties go to the lower latency."""
    if objective not in OBJECTIVES:
        raise OatError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if not variants:
        raise NoFeasibleVariant("the deployment has no variants")
    if max_latency_ms is not None and all(v.latency_ms is None for v in variants):
        raise OatError("a latency budget needs a latency profile for this device; run `oatdeploy profile DEPLOY`")
    needs_acc = objective == "robust" or min_robust_acc is not None
    if (needs_acc or objective == "clean" or min_clean_acc is not None) and all(
            v.clean_acc is None for v in variants):
        raise OatError("the manifest has no accuracy metrics; export after `oatdeploy eval` or with --evaluate")
    feasible = [v for v in variants if not any(_violations(v, max_latency_ms, min_robust_acc, min_clean_acc).values())]
    if not feasible:
        closest = min(variants, key=lambda v: sum(_violations(v, max_latency_ms, min_robust_acc, min_clean_acc)
                                                   .values()))
        binding = [name for name, gap in _violations(closest, max_latency_ms, min_robust_acc, min_clean_acc).items()
                   if gap > 0]
        asked = ", ".join(f"{k} {v:g}" for k, v in (("max latency ms", max_latency_ms),
                                                     ("min robust acc", min_robust_acc),
                                                     ("min clean acc", min_clean_acc)) if v is not None)
        verb = "binds" if len(binding) == 1 else "bind"
        raise NoFeasibleVariant(f"no variant meets the budget ({asked}): {' and '.join(binding)} {verb}; "
                                f"the closest is {closest.describe()}; relax the budget")

    def score(v: Variant) -> tuple[float, float]:
        acc = v.clean_acc if objective == "clean" else v.robust_acc
        return (acc if acc is not None else -1.0, -(v.latency_ms if v.latency_ms is not None else 0.0))

    return max(feasible, key=score)


def pareto_front(variants: Sequence[Variant]) -> list[Variant]:
    """Variants no other beats on SA, RA and latency at once (higher SA/RA, lower latency), by latency."""

    def key(v: Variant) -> tuple[float, float, float]:
        return (v.clean_acc or 0.0, v.robust_acc or 0.0, -(v.latency_ms if v.latency_ms is not None else 0.0))

    def dominates(a: Variant, b: Variant) -> bool:
        ka, kb = key(a), key(b)
        return all(x >= y for x, y in zip(ka, kb, strict=True)) and ka != kb

    front = [v for v in variants if not any(dominates(o, v) for o in variants)]
    return sorted(front, key=lambda v: (v.latency_ms or 0.0, v.id))
