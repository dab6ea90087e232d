"""Budget selection over a deployment's variants, and their Pareto front. Pure data, no backends.

Within the budget the highest SA (or RA) wins. Every variant was evaluated on the same images, so two of them
are compared by a paired test on those images (exact McNemar on the ones they disagree on), not by
whether their separate 95 % intervals overlap: a faster variant replaces the best only when the test cannot
tell them apart (p ≥ 0.05) and latency is what binds (docs/selection.md). A deployment exported before
per-image outcomes were kept falls back to the interval rule and says so. Budget limits apply to point
estimates, so a budget means what it says.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Sequence

from oatdeploy.runtime.errors import OatError
from oatdeploy.runtime.manifest import ACCURACIES
from oatdeploy.runtime.stats import intervals_overlap, mcnemar_exact

OBJECTIVES = ACCURACIES  # what the chosen variant maximises within the budget
ALPHA = 0.05  # a paired p-value at or above this: the test cannot tell two variants apart


@dataclass(frozen=True)
class PerImage:
    """Per image, whether a variant got it right, clean and under the attack, as bits of an int (image i is
    one bit; the order is the file's, the same for every variant). `images` names the image set: variants
    are paired only on the same one."""

    images: str
    samples: int
    clean: int
    robust: int

    def bits(self, objective: str) -> int:
        return self.clean if objective == "clean" else self.robust


def paired_p(a: Variant, b: Variant, objective: str) -> float | None:
    """Exact McNemar p-value of a against b on the images both were scored on; None when they share none."""
    if a.outcomes is None or b.outcomes is None or (a.outcomes.images, a.outcomes.samples) != (
            b.outcomes.images, b.outcomes.samples):
        return None
    x, y = a.outcomes.bits(objective), b.outcomes.bits(objective)
    return mcnemar_exact(bin(x & ~y).count("1"), bin(y & ~x).count("1"))


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
    outcomes: PerImage | None = None  # per-image outcomes of the evaluation SA/RA come from

    def to_json(self) -> dict[str, Any]:
        """The variant as `select --format json` prints it (λ as "lambda", as everywhere; outcomes left out)."""
        out = {("lambda" if f.name == "lam" else f.name): getattr(self, f.name) for f in fields(self)
               if f.name != "outcomes"}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

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
    """Equal point estimates, or (unless strict) overlapping 95 % intervals; without intervals, equality only.
    The rule for deployments without per-image outcomes."""
    if _accuracy(a, objective) == _accuracy(b, objective):
        return True
    ia, ib = (a.clean_ci95, b.clean_ci95) if objective == "clean" else (a.robust_ci95, b.robust_ci95)
    return not strict and ia is not None and ib is not None and intervals_overlap(ia, ib)


def tied_latency(a: Variant, b: Variant, strict: bool = False) -> bool:
    """Equal p50, or (unless strict) overlapping ranges of round medians. Unprofiled ("p50 n/a") ties with
    nothing: two unknown latencies are not two equal ones."""
    if a.latency_ms is None or b.latency_ms is None:
        return False
    if a.latency_ms == b.latency_ms:
        return True
    sa, sb = a.latency_spread_ms, b.latency_spread_ms
    return not strict and sa is not None and sb is not None and intervals_overlap(sa, sb)


def latency_binds(variants: Sequence[Variant], budget: Budget, best: Variant) -> Variant | None:
    """The variant that would win without the latency limit, when that limit keeps it out; None when latency
    does not bind (no limit, or the most accurate variant within the other limits meets it)."""
    if budget.max_latency_ms is None:
        return None
    relaxed = replace(budget, max_latency_ms=None)
    top = max((v for v in variants if not any(_violations(v, relaxed).values())),
              key=lambda v: _accuracy(v, budget.objective))
    return top if _accuracy(top, budget.objective) > _accuracy(best, budget.objective) else None


@dataclass(frozen=True)
class Choice:
    """What `choose` picked and why: the variants within the budget, the best point estimate, the variants
    counted as tied with it on accuracy (paired test, or intervals without outcomes) and then on latency, the
    paired p-values against the best, the rule's own lines, and notes the caller adds (which precision SA/RA
    are of)."""

    variant: Variant
    budget: Budget
    feasible: tuple[Variant, ...]
    best: Variant
    accuracy_tied: tuple[Variant, ...]
    latency_tied: tuple[Variant, ...]
    rule: tuple[str, ...] = ()
    paired_p: tuple[tuple[str, float], ...] = ()
    notes: tuple[str, ...] = ()

    def reasons(self) -> list[str]:
        """How the choice was made, in words: the budget, the comparison rule and what it did."""
        limits = [f"{label} {op} {value:.3g}" for value, label, op in
                  ((self.budget.max_latency_ms, "p50", "<="), (self.budget.min_robust_acc, "RA", ">="),
                   (self.budget.min_clean_acc, "SA", ">=")) if value is not None]
        count = f"{len(self.feasible)} variant{'s meet' if len(self.feasible) > 1 else ' meets'} it"
        lines = [f"budget: {', '.join(limits)}, on point estimates; {count}" if limits
                 else f"no budget: all {len(self.feasible)} variants compared"]
        return lines + list(self.rule) + list(self.notes)

    def describe(self) -> str:
        """The chosen variant, then why, one reason a line."""
        return "\n".join([self.variant.describe(), *(f"  {line}" for line in self.reasons())])


def _name(objective: str) -> str:
    return "SA" if objective == "clean" else "RA"


def _strict(feasible: Sequence[Variant], budget: Budget, best: Variant) -> Choice:
    line = (f"strict: the highest {_name(budget.objective)} point estimate wins, ties to the lower p50; no "
            "paired test, no latency tie-break")
    return Choice(best, budget, tuple(feasible), best, (best,), (best,), (line,))


def _paired(variants: Sequence[Variant], feasible: Sequence[Variant], budget: Budget, best: Variant) -> Choice:
    """The highest objective within the budget; a faster variant the paired test cannot tell from it replaces
    it only when latency binds."""
    name, objective = _name(budget.objective), budget.objective
    faster = [v for v in feasible if _latency(v) < _latency(best)]
    p = {v.id: paired_p(v, best, objective) for v in faster}
    same = [v for v in faster if (p[v.id] or 0.0) >= ALPHA]
    blocker = latency_binds(variants, budget, best)
    n = best.outcomes.samples if best.outcomes else 0
    pairs = tuple((vid, float(pv)) for vid, pv in p.items() if pv is not None)
    if len(feasible) == 1:
        line = f"{best.id} is the only variant within the budget"
    elif blocker is None:
        why = ("no latency limit" if budget.max_latency_ms is None
               else "latency does not bind (the most accurate variant within the other limits meets it)")
        line = f"{best.id} has the highest {name} within the budget; {why}, so no faster variant replaces it"
    elif same:
        quickest = min(same, key=_latency)
        close = [v for v in same if v is quickest or tied_latency(v, quickest)]  # within profiling noise
        chosen = max(close, key=lambda v: (_accuracy(v, objective), _accuracy(v, "robust"), -_latency(v)))
        within = (f"; p50s of {', '.join(v.id for v in close)} are within the profiling spread, the most accurate "
                  "serves" if len(close) > 1 else "")
        line = (f"tie: latency binds ({blocker.id}, {name} {_accuracy(blocker, objective):.3f}, is over it) and a "
                f"paired test on the {n} shared images cannot tell {chosen.id} from the best, {best.id} (exact "
                f"McNemar p = {p[chosen.id]:.2g} >= {ALPHA:g}), so the faster {chosen.id} serves{within} "
                "(--strict keeps the best)")
        return Choice(chosen, budget, tuple(feasible), best, (best, *same), tuple(close), (line,), pairs)
    else:
        line = (f"{best.id} has the highest {name} within the budget; latency binds ({blocker.id} is over it), but "
                f"a paired test on the {n} shared images tells each faster variant from {best.id} (exact McNemar "
                f"p < {ALPHA:g})" if faster else
                f"{best.id} has the highest {name} within the budget and is the fastest of them")
    return Choice(best, budget, tuple(feasible), best, (best,), (best,), (line,), pairs)


def _intervals(feasible: Sequence[Variant], budget: Budget, best: Variant) -> Choice:
    """The rule for variants without per-image outcomes: overlapping 95 % intervals tie, the faster wins, then
    latencies within their profiling spread tie and the more robust wins."""
    name, objective = _name(budget.objective), budget.objective
    accuracy_tied = [v for v in feasible if tied_accuracy(v, best, objective)]
    fastest = min(accuracy_tied, key=_latency)
    latency_tied = [v for v in accuracy_tied if v is fastest or tied_latency(v, fastest)]
    chosen = max(latency_tied, key=lambda v: (_accuracy(v, "robust"), _accuracy(v, objective), -_latency(v)))
    lines = [f"no per-image outcomes to pair {name}s on (exported before they were kept, or measured by "
             "`verify`): falling back to comparing 95 % intervals; re-export from an eval.json to get the paired "
             "test"]
    others = [v.id for v in accuracy_tied if v.id != best.id]
    interval = best.clean_ci95 if objective == "clean" else best.robust_ci95
    if len(feasible) == 1:
        lines.append(f"{best.id} is the only variant within the budget")
    elif interval is None:
        lines.append(f"{best.id} has the best {name} point estimate (the manifest records no 95 % intervals to "
                     "judge ties by either)")
    elif others:
        lines.append(f"tie: the {name} 95 % intervals of {', '.join(others)} overlap that of the best, {best.id}, "
                     "so they count as tied and the faster wins (--strict compares point estimates)")
    else:
        lines.append(f"{best.id} has the best {name}, and no other variant's 95 % interval overlaps it "
                     "(overlapping intervals count as tied; --strict compares point estimates)")
    tied = [v.id for v in latency_tied if v.id != fastest.id]
    if tied:
        lines.append(f"tie: p50 of {', '.join(tied)} is within the spread between profiling rounds of the "
                     f"fastest, {fastest.id}, so the more robust wins")
    return Choice(chosen, budget, tuple(feasible), best, tuple(accuracy_tied), tuple(latency_tied), tuple(lines))


def choose(variants: Sequence[Variant], budget: Budget | None = None, **limits: Any) -> Choice:
    """The best variant within the budget (a `Budget`, or its fields as keywords), and why (`Choice`).

    Among variants meeting every limit (point estimates), the highest objective accuracy (ties to the lower
    p50). Unless strict, a faster variant replaces it when latency binds and an exact McNemar test on the
    shared images gives p ≥ 0.05: the fastest such (of those within its profiling spread, the most accurate).
    Without per-image outcomes: the interval rule.
    """
    budget = Budget.of(budget, **limits)
    objective = budget.objective
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
    if budget.strict:
        return _strict(feasible, budget, best)
    if all(paired_p(v, best, objective) is not None for v in feasible):
        return _paired(variants, feasible, budget, best)
    return _intervals(feasible, budget, best)


def select(variants: Sequence[Variant], budget: Budget | None = None, **limits: Any) -> Variant:
    """The best SA (or RA) within the budget (see `choose` for when a faster one replaces it)."""
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
