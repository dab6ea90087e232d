"""The picture of a deployment, with its noise: SA vs RA per width (the λ knob), and SA vs latency on a device.

Every accuracy is drawn with its 95 % interval and every latency with the spread between profiling rounds,
on axes wide enough (at least ten points of accuracy, latency from 0) that noise does not look like signal,
and no wider: a latency budget far beyond every point is named in the legend, not drawn out to. Each panel
marks the Pareto front of its own plane; the lines joining a width's λs are in the legend, the attack and
its ε on the RA axis. Every budget is drawn and said in words under the panels: its limits, what it chose,
or why nothing. Labels are placed where they overlap nothing and stay inside their panel. Torch-free like
the runtime; matplotlib is imported only here, with the Agg backend, so it draws on a headless device too.
Python 3.8+.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from oatdeploy.runtime.atomic import atomic_save
from oatdeploy.runtime.errors import OatError
from oatdeploy.runtime.manifest import Manifest
from oatdeploy.runtime.selection import Budget, Choice, Variant, pareto_front

MIN_SPAN = 0.10  # accuracy axes span at least ten points: a 1.6-point window makes noise look dramatic
FAR = 1.5  # a latency budget beyond this many times the slowest point is named, not drawn out to
BACKENDS = {"ort": "ONNX Runtime", "trt": "TensorRT"}
BUDGET_COLOURS = ("#d62728", "#9467bd", "#8c564b", "#e377c2")


class Outcome(NamedTuple):
    """One budget and what selection made of it: the choice, or the reason nothing meets it."""

    budget: Budget
    choice: Choice | None = None
    error: str | None = None


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise OatError('plotting needs matplotlib: pip install "oatdeploy[plot]" (or pip install matplotlib)') from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _by_width(variants: Sequence[Variant]) -> dict[float, list[Variant]]:
    groups: dict[float, list[Variant]] = {}
    for v in sorted(variants, key=lambda v: (v.width, v.lam)):
        groups.setdefault(v.width, []).append(v)
    return groups


def device_title(key: str) -> str:
    """'AMD EPYC 7B13|ort|fp32|b1' -> 'AMD EPYC 7B13, ONNX Runtime fp32, batch 1'."""
    parts = key.split("|")
    if len(parts) != 4:
        return key
    device, backend, precision, batch = parts
    return f"{device}, {BACKENDS.get(backend, backend)} {precision}, batch\u00a0{batch.lstrip('b')}"  # kept on a line


def threat_text(manifest: Manifest) -> str:
    """`PGD-20, L∞ ε = 0.1, 1000 test images`: what the RA on the plot was measured under."""
    source, threat = manifest.metrics_source, manifest.threat_model
    attack = (source.attack if source and source.attack else None) or {}
    name = str(attack.get("name") or threat.attack or "attack n/a")
    kind = attack.get("version") or attack.get("steps") or (threat.steps if not attack else None)
    eps = attack.get("eps", threat.eps)
    norm = {"linf": "L∞", "l2": "L2"}.get(str(attack.get("norm") or threat.norm), "")
    text = (f"{name.upper() if name == 'pgd' else name}{f'-{kind}' if kind else ''}"
            + (f", {norm + ' ' if norm else ''}ε = {eps:.4g}" if isinstance(eps, (int, float)) else ""))
    images = source.num_samples if source and source.origin else None
    return text + (f", {images} test images" if images else "")


def latency_limit(variants: Sequence[Variant], lines: Sequence[float]) -> float:
    """The latency axis' right end: the slowest point's spread, and a budget line only when it lies within
    FAR times that (one far beyond would squeeze every point into a corner)."""
    slowest = max((v.latency_spread_ms or (v.latency_ms, v.latency_ms))[1] for v in variants)
    return 1.12 * max([slowest, *(line for line in lines if line <= FAR * slowest)])


def _errors(values: Sequence[float], intervals: Sequence[tuple[float, float] | None]) -> list[list[float]] | None:
    """matplotlib's [[below...], [above...]] from (low, high) intervals; None when no point has one."""
    if all(i is None for i in intervals):
        return None
    return [[v - i[0] if i else 0.0 for v, i in zip(values, intervals)],
            [i[1] - v if i else 0.0 for v, i in zip(values, intervals)]]


def accuracy_limits(values: Sequence[float], intervals: Sequence[tuple[float, float] | None],
                    lines: Sequence[float] = ()) -> tuple[float, float]:
    """An accuracy axis that holds every interval and budget line and spans at least MIN_SPAN, inside [0, 1]."""
    lows = [i[0] if i else v for v, i in zip(values, intervals)] + list(lines)
    highs = [i[1] if i else v for v, i in zip(values, intervals)] + list(lines)
    lo, hi = min(lows), max(highs)
    pad = max(0.01, 0.08 * (hi - lo))
    lo, hi = lo - pad, hi + pad
    if hi - lo < MIN_SPAN:
        mid = (lo + hi) / 2
        lo, hi = mid - MIN_SPAN / 2, mid + MIN_SPAN / 2
    if lo < 0:
        lo, hi = 0.0, hi - lo
    if hi > 1:
        lo, hi = max(0.0, lo - (hi - 1)), 1.0
    return lo, hi


def _points(ax: Any, variants: Sequence[Variant], x: str, colour: str, label: str) -> None:
    """Points with error bars on both axes: 95 % intervals for accuracies, the rounds' spread for latency."""
    def values(v: Variant, axis: str) -> tuple[float, tuple[float, float] | None]:
        if axis == "latency":
            return v.latency_ms, v.latency_spread_ms
        if axis == "robust":
            return v.robust_acc, v.robust_ci95
        return v.clean_acc, v.clean_ci95

    xs = [values(v, x) for v in variants]
    ys = [values(v, "clean") for v in variants]
    ax.errorbar([p[0] for p in xs], [p[0] for p in ys], xerr=_errors(*zip(*xs)), yerr=_errors(*zip(*ys)),
                fmt="o", ms=5, color=colour, ecolor=colour, elinewidth=1, capsize=2, alpha=0.9, label=label,
                zorder=3)


def _front(ax: Any, variants: Sequence[Variant], x: str, label: str) -> None:
    """The Pareto front of this plane (higher SA, and higher RA or lower latency), ringed and joined by the
    staircase that bounds what the front dominates."""
    front = pareto_front(variants, axes=("clean", x))
    xy = sorted(((v.robust_acc if x == "robust" else v.latency_ms), v.clean_acc) for v in front)
    ax.step([p[0] for p in xy], [p[1] for p in xy], where="pre" if x == "robust" else "post", color="0.35",
            ls="--", lw=1, zorder=2, label=label)
    ax.scatter([p[0] for p in xy], [p[1] for p in xy], s=120, facecolors="none", edgecolors="0.35", lw=1, zorder=2,
               gid="pareto-front")


def _budgets(ax: Any, outcomes: Sequence[Outcome], x: str) -> None:
    """Each budget's limits as lines in this plane and its choice as a numbered star; a latency limit beyond
    the axis is a legend entry and an arrow at the right edge."""
    right = ax.get_xlim()[1]
    for n, outcome in enumerate(outcomes, 1):
        colour = BUDGET_COLOURS[(n - 1) % len(BUDGET_COLOURS)]
        b = outcome.budget
        xline = b.min_robust_acc if x == "robust" else b.max_latency_ms
        if xline is not None and x == "latency" and xline > right:
            ax.plot([1.0], [0.98 - 0.04 * (n - 1)], ">", color=colour, ms=7, transform=ax.transAxes, clip_on=False,
                    ls="none", label=f"budget {n}: p50 ≤ {xline:.3g} ms, beyond this axis (every point meets it)")
        elif xline is not None:
            ax.axvline(xline, color=colour, ls=":", lw=1.3, label=f"budget {n}: "
                       + (f"RA ≥ {xline:.3g}" if x == "robust" else f"p50 ≤ {xline:.3g} ms"))
        if b.min_clean_acc is not None:
            ax.axhline(b.min_clean_acc, color=colour, ls=":", lw=1.3, label=f"budget {n}: SA ≥ {b.min_clean_acc:.3g}")
        if outcome.choice is not None:
            v = outcome.choice.variant
            at = v.robust_acc if x == "robust" else v.latency_ms
            if at is not None and v.clean_acc is not None:
                ax.plot(at, v.clean_acc, "*", ms=17, mfc="none", mec=colour, mew=1.6, zorder=5,
                        label=f"budget {n} chose {v.id}")


Label = tuple  # (x, y, text, colour, x interval or None, y interval or None, marker radius in pixels)
OFFSETS = [(dx * r, dy * r) for r in (1, 2, 3, 4.5) for dx, dy in
           ((6, 4), (6, -12), (-8, 4), (-8, -12), (0, 10), (0, -18), (12, -4), (-14, -4))]


def _note(ax: Any, x: float, y: float, text: str, colour: str, dx: float, dy: float, leader: bool = False) -> Any:
    arrow = {"arrowstyle": "-", "color": colour, "lw": 0.5, "alpha": 0.7, "shrinkA": 0, "shrinkB": 3}
    return ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=7, color=colour,
                       ha="left" if dx > 0 else ("right" if dx < 0 else "center"), va="bottom" if dy >= 0 else "top",
                       zorder=6, arrowprops=arrow if leader else None)


def place_labels(ax: Any, renderer: Any, labels: Sequence[Label]) -> list[Any]:
    """Annotate each point at the nearest spot where its text overlaps no other label, point or error bar and
    stays inside the axes (greedy; a leader line when it had to move away; the least crowded spot if none is
    free). Returns the annotations."""
    from matplotlib.transforms import Bbox

    inside = ax.get_window_extent(renderer)
    taken = []
    for x, y, _, _, xint, yint, r in labels:
        px, py = ax.transData.transform((x, y))
        taken.append(Bbox.from_extents(px - r, py - r, px + r, py + r))
        if xint:
            (x0, _), (x1, _) = ax.transData.transform([(xint[0], y), (xint[1], y)])
            taken.append(Bbox.from_extents(x0, py - 1, x1, py + 1))
        if yint:
            (_, y0), (_, y1) = ax.transData.transform([(x, yint[0]), (x, yint[1])])
            taken.append(Bbox.from_extents(px - 1, y0, px + 1, y1))
    placed = []
    for x, y, text, colour, *_ in labels:
        best, fewest = None, None
        for dx, dy in OFFSETS:
            note = _note(ax, x, y, text, colour, dx, dy)
            box = note.get_window_extent(renderer)
            note.remove()
            outside = not (inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1)
            clashes = sum(box.overlaps(t) for t in taken) + (len(taken) + 1) * outside
            if fewest is None or clashes < fewest:
                best, fewest = (dx, dy, box), clashes
            if clashes == 0:
                break
        dx, dy, box = best
        placed.append(_note(ax, x, y, text, colour, dx, dy, leader=abs(dx) + abs(dy) > 20))
        taken.append(box.padded(5))  # a little air: labels that merely touch read as one
    return placed


def _panel(ax: Any, variants: Sequence[Variant], x: str, outcomes: Sequence[Outcome], attack: str = "") -> list[tuple]:
    """One plane: points per width joined in λ order (in the legend), its front, the budgets; returns the labels
    to place."""
    from matplotlib.lines import Line2D

    labels = []
    starred = {o.choice.variant.id for o in outcomes if o.choice is not None}
    budget_sa = [o.budget.min_clean_acc for o in outcomes if o.budget.min_clean_acc is not None]
    ax.set_ylim(*accuracy_limits([v.clean_acc for v in variants], [v.clean_ci95 for v in variants], budget_sa))
    if x == "robust":
        budget_ra = [o.budget.min_robust_acc for o in outcomes if o.budget.min_robust_acc is not None]
        ax.set_xlim(*accuracy_limits([v.robust_acc for v in variants], [v.robust_ci95 for v in variants], budget_ra))
        ax.set_xlabel(f"robust accuracy (RA) under {attack or 'the attack'}, 95 % interval")
    else:
        ax.set_xlim(0, latency_limit(variants, [o.budget.max_latency_ms for o in outcomes
                                                if o.budget.max_latency_ms is not None]))
        ax.set_xlabel("latency p50 (ms), bars: lowest-highest median of the profiling rounds")
    widths = []
    for i, (width, group) in enumerate(_by_width(variants).items()):
        colour = f"C{i}"
        _points(ax, group, x, colour, "_nolegend_")
        xs = [v.robust_acc if x == "robust" else v.latency_ms for v in group]
        ax.plot(xs, [v.clean_acc for v in group], "-", color=colour, lw=0.8, alpha=0.4, zorder=1)
        lams = f"λ {group[0].lam:g} to {group[-1].lam:g}" if len(group) > 1 else f"λ {group[0].lam:g}"
        widths.append(Line2D([], [], color=colour, marker="o", ms=5, lw=0.8,
                             label=f"width {width:g}: {lams}, joined in λ order"))
        labels += [(px, v.clean_acc, f"λ={v.lam:g}", colour, v.robust_ci95 if x == "robust" else v.latency_spread_ms,
                    v.clean_ci95, 12 if v.id in starred else 5) for px, v in zip(xs, group)]
    _front(ax, variants, x, "Pareto front of this plane: " + ("SA and RA" if x == "robust" else "SA and p50"))
    _budgets(ax, outcomes, x)
    ax.set_ylabel("clean accuracy (SA), 95 % interval")
    ax.grid(alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=widths + handles, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2,
              frameon=False)
    return labels


def outcome_text(n: int, outcome: Outcome) -> str:
    """'Budget 1 (p50 ≤ 0.3 ms, RA ≥ 0.5): chose ... because ...', or why nothing was chosen."""
    head = f"Budget {n} ({outcome.budget.text()}): "
    if outcome.choice is None:
        return head + f"nothing chosen: {outcome.error}"
    why = [r for r in outcome.choice.reasons() if not r.startswith(("budget:", "no budget:", "SA/RA:"))]
    return head + f"chose {outcome.choice.variant.describe()}. " + "; ".join(why)


def draw_deployment(variants: Sequence[Variant], key: str, outcomes: Sequence[Outcome] = (),
                    title: str = "", attack: str = "") -> Any:
    """The figure (for `plot_deployment` to save; tests inspect it): two panels and the budgets in words.
    `attack` (`threat_text`) says what RA was measured under, on the RA axis and in the notes."""
    plt = _pyplot()
    scored = [v for v in variants if v.clean_acc is not None and v.robust_acc is not None]
    timed = [v for v in scored if v.latency_ms is not None]
    fig = plt.figure(figsize=(13, 7.8), layout="constrained")
    grid = fig.add_gridspec(2, 2, height_ratios=[4.2, 1])
    left, right, words = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, :])
    labels = {}
    if scored:
        labels[left] = _panel(left, scored, "robust", outcomes, attack)
        left.set_title("SA vs RA per width, one point per λ", fontsize=10)
    else:
        left.text(0.5, 0.5, "no SA/RA in the manifest: export after `oatdeploy eval`", ha="center", va="center",
                  transform=left.transAxes)
        left.set_axis_off()
    if timed:
        labels[right] = _panel(right, timed, "latency", outcomes)
        right.set_title("\n".join(textwrap.wrap(f"SA vs latency on {device_title(key)}", 70)), fontsize=10)
    else:
        right.text(0.5, 0.5, "\n".join(["no latency profile for", *textwrap.wrap(device_title(key), 50),
                                         "run `oatdeploy profile` on this device"]),
                   ha="center", va="center", transform=right.transAxes, fontsize=9)
        right.set_axis_off()
    measured = {v.accuracy_precision for v in variants}
    served = {v.precision for v in variants}
    notes = [f"SA/RA measured in {', '.join(sorted(measured))}" + (f", RA under {attack}" if attack else "")
             + (f" (not in {', '.join(sorted(served))}: run `oatdeploy verify`)" if measured != served else "")]
    if all(v.clean_ci95 is None for v in scored):
        notes.append("this manifest records no 95 % intervals, so none are drawn")
    lines = [outcome_text(n, o) for n, o in enumerate(outcomes, 1)] or ["No budget given."]
    text = "\n".join(textwrap.fill(line, 190, subsequent_indent="    ") for line in [*lines, "; ".join(notes)])
    words.text(0.0, 1.0, text, va="top", ha="left", fontsize=8, transform=words.transAxes)
    words.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=11)
    fig.canvas.draw()  # lay out, then place labels in the final axes
    renderer = fig.canvas.get_renderer()
    for ax, points in labels.items():
        place_labels(ax, renderer, points)
    fig.set_layout_engine("none")  # keep the axes where the labels were placed
    return fig


def plot_deployment(variants: Sequence[Variant], key: str, out: str | Path, outcomes: Sequence[Outcome] = (),
                    title: str = "", attack: str = "") -> Path:
    """Write the PNG atomically (a failed draw leaves an older plot in place)."""
    plt = _pyplot()
    fig = draw_deployment(variants, key, outcomes, title, attack)
    try:
        atomic_save(out, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    finally:
        plt.close(fig)
    return Path(out)
