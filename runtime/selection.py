"""Budget selection over a deployment's variants, and their Pareto front. Pure data, no backends.

Accuracies measured on n images and latencies measured over a few rounds carry noise; a choice between
two variants that differ by less than their noise is a coin toss presented as a decision. So, unless
asked to be strict, accuracies whose 95 % intervals overlap the best one's count as tied, then latencies
whose profiling spreads overlap the fastest one's, and the most robust of what is left wins
(docs/selection.md). Budget limits apply to point estimates, so a budget means what it says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Sequence

from oatdeploy.runtime.errors import OatError
from oatdeploy.runtime.manifest import ACCURACIES
from oatdeploy.runtime.stats import intervals_overlap

OBJECTIVES = ACCURACIES  # what the chosen variant maximises within the budget


class NoFeasibleVariant(OatError):
    """No variant meets the budget; the message names the binding constraint and the closest variant."""


@dataclass(frozen=True)
class Variant:
    """One (λ, width) as the runtime sees it: accuracy for the precision served, latency on this device.

    `path` is the artifact that serves it, relative to the deployment folder; shared-mode variants of one
    width share it and differ by `lam_index`. `clean_ci95`/`robust_ci95` are the 95 % intervals of SA/RA
    (None in manifests made before they were recorded); `latency_spread_ms` is the lowest and highest median
    of the profiling rounds (None for one round or an older profile). `precision` is what is served,
    `accuracy_precision` what SA/RA were measured at: fp32 until `oatdeploy verify` measured `precision`.
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
    clean_ci95: tuple[float, float] | None = None
    robust_ci95: tuple[float, float] | None = None
    latency_spread_ms: tuple[float, float] | None = None
    precision: str = "fp32"
    accuracy_precision: str = "fp32"

    def describe(self) -> str:
        def fmt(v: float | None, spec: str, interval: tuple[float, float] | None = None) -> str:
            text = "n/a" if v is None else format(v, spec)
            return text if interval is None or v is None else f"{text} [{interval[0]:{spec}}-{interval[1]:{spec}}]"

        measured = (f"; SA/RA measured in {self.accuracy_precision}, not {self.precision}"
                    if self.accuracy_precision != self.precision else "")
        return (f"{self.id} (SA {fmt(self.clean_acc, '.3f', self.clean_ci95)}, "
                f"RA {fmt(self.robust_acc, '.3f', self.robust_ci95)}, "
                f"p50 {fmt(self.latency_ms, '.3f', self.latency_spread_ms)} ms{measured})")


LIMITS = {"latency": "max_latency_ms", "robust accuracy": "min_robust_acc", "clean accuracy": "min_clean_acc"}


def _violations(v: Variant, budget: Budget) -> dict[str, float]:
    """How far a variant is from each given constraint (0 when met; latency relative, accuracy absolute)."""
    gaps: dict[str, float] = {}
    if budget.max_latency_ms is not None:
        gaps["latency"] = max(0.0, _latency(v) - budget.max_latency_ms) / max(budget.max_latency_ms, 1e-9)
    if budget.min_robust_acc is not None:
        gaps["robust accuracy"] = max(0.0, budget.min_robust_acc - (v.robust_acc if v.robust_acc is not None else -1))
    if budget.min_clean_acc is not None:
        gaps["clean accuracy"] = max(0.0, budget.min_clean_acc - (v.clean_acc if v.clean_acc is not None else -1))
    return gaps


def _infeasible(variants: Sequence[Variant], budget: Budget) -> NoFeasibleVariant:
    """Name what binds: a constraint no variant meets even alone, else those the closest variant misses."""
    asked = ", ".join(f"{k}={v:g}" for k, v in budget.limits.items() if v is not None)
    gaps = [_violations(v, budget) for v in variants]
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


@dataclass(frozen=True)
class Budget:
    """What the served variant must meet (limits on point estimates) and what it maximises within them.

    Checked once, when made: a NaN or infinite limit would silently admit or exclude everything.
    """

    max_latency_ms: float | None = None
    min_robust_acc: float | None = None
    min_clean_acc: float | None = None
    objective: str = "clean"  # the accuracy maximised within the limits: clean (SA) or robust (RA)
    strict: bool = False  # compare point estimates only (no ties within the noise)

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise OatError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if not isinstance(self.strict, bool):
            raise OatError(f"strict must be True or False, got {self.strict!r}")
        for name, value in self.limits.items():
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise OatError(f"{name} must be a finite number, got {value!r}")
            if name == "max_latency_ms" and value <= 0:
                raise OatError(f"max_latency_ms must be above 0, got {value!r}")

    @classmethod
    def of(cls, budget: Budget | None = None, **changes: Any) -> Budget:
        """`budget` (or no limits) with `changes` applied: how the API's keyword arguments become a Budget."""
        base = budget if budget is not None else cls()
        unknown = sorted(set(changes) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"unknown budget fields {unknown}; use {[f.name for f in fields(cls)]}")
        return replace(base, **changes) if changes else base

    @property
    def limits(self) -> dict[str, float | None]:
        return {"max_latency_ms": self.max_latency_ms, "min_robust_acc": self.min_robust_acc,
                "min_clean_acc": self.min_clean_acc}

    @property
    def constrained(self) -> bool:
        """Whether any limit is set (without one, every variant is feasible)."""
        return any(v is not None for v in self.limits.values())

    def text(self) -> str:
        """`p50 ≤ 0.229 ms, RA ≥ 0.297`, or `no limits`."""
        limits = [f"{label} {op} {value:.3g}{unit}" for value, label, op, unit in
                  ((self.max_latency_ms, "p50", "≤", " ms"), (self.min_robust_acc, "RA", "≥", ""),
                   (self.min_clean_acc, "SA", "≥", "")) if value is not None]
        return ", ".join(limits) or "no limits"


def _accuracy(v: Variant, objective: str) -> float:
    acc = v.clean_acc if objective == "clean" else v.robust_acc
    return -1.0 if acc is None else acc


def _latency(v: Variant) -> float:
    """Unprofiled counts as slowest: it cannot be promised to meet anything."""
    return float("inf") if v.latency_ms is None else v.latency_ms


def tied_accuracy(a: Variant, b: Variant, objective: str, strict: bool = False) -> bool:
    """Equal point estimates, or (unless strict) overlapping 95 % intervals; without intervals, equality only."""
    if _accuracy(a, objective) == _accuracy(b, objective):
        return True
    ia, ib = (a.clean_ci95, b.clean_ci95) if objective == "clean" else (a.robust_ci95, b.robust_ci95)
    return not strict and ia is not None and ib is not None and intervals_overlap(ia, ib)


def tied_latency(a: Variant, b: Variant, strict: bool = False) -> bool:
    """Equal p50, or (unless strict) overlapping ranges of round medians; without them, equality only."""
    if _latency(a) == _latency(b):
        return True
    sa, sb = a.latency_spread_ms, b.latency_spread_ms
    return not strict and sa is not None and sb is not None and intervals_overlap(sa, sb)


@dataclass(frozen=True)
class Choice:
    """What `choose` picked and why: the variants within the budget, the best point estimate, the variants
    tied with it on accuracy and then on latency, and notes the caller adds (which precision SA/RA are of)."""

    variant: Variant
    budget: Budget
    feasible: tuple[Variant, ...]
    best: Variant
    accuracy_tied: tuple[Variant, ...]
    latency_tied: tuple[Variant, ...]
    notes: tuple[str, ...] = ()

    def reasons(self) -> list[str]:
        """How the choice was made, in words: the budget, the comparison rule and what it did."""
        name = "SA" if self.budget.objective == "clean" else "RA"
        limits = [f"{label} {op} {value:.3g}" for value, label, op in
                  ((self.budget.max_latency_ms, "p50", "<="), (self.budget.min_robust_acc, "RA", ">="),
                   (self.budget.min_clean_acc, "SA", ">=")) if value is not None]
        count = f"{len(self.feasible)} variant{'s meet' if len(self.feasible) > 1 else ' meets'} it"
        lines = [f"budget: {', '.join(limits)}, on point estimates; {count}" if limits
                 else f"no budget: all {len(self.feasible)} variants compared"]
        others = [v.id for v in self.accuracy_tied if v.id != self.best.id]
        interval = self.best.clean_ci95 if self.budget.objective == "clean" else self.best.robust_ci95
        if len(self.feasible) == 1:
            lines.append(f"{self.best.id} is the only variant within the budget")
        elif self.budget.strict:
            lines.append(f"strict: the highest {name} point estimate wins, ties to the lower p50")
        elif interval is None:
            lines.append(f"{self.best.id} has the best {name} point estimate (the manifest records no 95 % "
                         "intervals to judge ties by; an export from a newer eval.json has them)")
        elif others:
            lines.append(f"tie: the {name} 95 % intervals of {', '.join(others)} overlap that of the best, "
                         f"{self.best.id}, so they count as tied and the faster wins (--strict compares point "
                         "estimates)")
        else:
            lines.append(f"{self.best.id} has the best {name}, and no other variant's 95 % interval overlaps it "
                         "(overlapping intervals count as tied; --strict compares point estimates)")
        fastest = min(self.latency_tied, key=_latency)
        others = [v.id for v in self.latency_tied if v.id != fastest.id]
        if others and not self.budget.strict:
            lines.append(f"tie: p50 of {', '.join(others)} is within the spread between profiling rounds of the "
                         f"fastest, {fastest.id}, so the more robust wins")
        return lines + list(self.notes)

    def describe(self) -> str:
        """The chosen variant, then why, one reason a line."""
        return "\n".join([self.variant.describe(), *(f"  {line}" for line in self.reasons())])


def choose(variants: Sequence[Variant], budget: Budget | None = None, **limits: Any) -> Choice:
    """The best variant within the budget (a `Budget`, or its fields as keywords), and why (`Choice`).

    Among variants meeting every limit (point estimates): those whose objective accuracy ties with the best
    one's (overlapping 95 % intervals, or equal), of those the ones whose p50 ties with the fastest's (round
    medians' ranges overlap, or equal), and of those the most robust. `strict` ties only equal values.
    """
    budget = Budget.of(budget, **limits)
    objective, strict = budget.objective, budget.strict
    if not variants:
        raise NoFeasibleVariant("the deployment has no variants")
    if budget.max_latency_ms is not None and all(v.latency_ms is None for v in variants):
        raise OatError("a latency budget needs a latency profile for this device; run `oatdeploy profile DEPLOY`")
    if all((v.clean_acc if objective == "clean" else v.robust_acc) is None for v in variants):
        raise OatError("the manifest has no accuracy metrics; export after `oatdeploy eval` or with --evaluate")
    feasible = [v for v in variants if not any(_violations(v, budget).values())]
    if not feasible:
        raise _infeasible(variants, budget)
    best = max(feasible, key=lambda v: (_accuracy(v, objective), -_latency(v)))
    accuracy_tied = [v for v in feasible if tied_accuracy(v, best, objective, strict)]
    fastest = min(accuracy_tied, key=_latency)
    latency_tied = [v for v in accuracy_tied if tied_latency(v, fastest, strict)]
    chosen = max(latency_tied, key=lambda v: (_accuracy(v, "robust"), _accuracy(v, objective), -_latency(v)))
    return Choice(chosen, budget, tuple(feasible), best, tuple(accuracy_tied), tuple(latency_tied))


def select(variants: Sequence[Variant], budget: Budget | None = None, **limits: Any) -> Variant:
    """The best SA (or RA) within the budget; noise-level differences are ties (see `choose`)."""
    return choose(variants, budget, **limits).variant


def pareto_front(variants: Sequence[Variant], axes: Sequence[str] = ("clean", "robust", "latency")) -> list[Variant]:
    """Variants no other beats on every axis at once (higher SA/RA, lower latency), by latency.

    `axes` picks the plane: ("clean", "latency") is the front of an SA-vs-latency plot, where a variant
    on the 3-D front may well look dominated.
    """
    def key(v: Variant) -> tuple[float, ...]:
        return tuple(-_latency(v) if a == "latency" else max(_accuracy(v, a), 0.0) for a in axes)

    def dominates(a: Variant, b: Variant) -> bool:
        ka, kb = key(a), key(b)
        return all(x >= y for x, y in zip(ka, kb)) and ka != kb

    front = [v for v in variants if not any(dominates(o, v) for o in variants)]
    return sorted(front, key=lambda v: (_latency(v), v.id))
