"""The picture of a deployment: SA vs RA per width (the λ knob), and SA vs latency on a profiled device.

Torch-free like the runtime; matplotlib is imported only here, with the Agg backend, so it draws on a
headless device too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from oatdeploy.atomic import atomic_save
from oatdeploy.errors import OatError
from oatdeploy.runtime.selection import Variant, pareto_front


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


def _tradeoff(ax: Any, variants: Sequence[Variant], chosen: Variant | None) -> None:
    """One curve per width through its λs: moving λ up trades clean accuracy for robustness."""
    for i, (width, group) in enumerate(_by_width(variants).items()):
        pts = [v for v in group if v.clean_acc is not None and v.robust_acc is not None]
        ax.plot([v.robust_acc for v in pts], [v.clean_acc for v in pts], "o-", color=f"C{i}", label=f"width {width:g}")
        for v in pts:
            ax.annotate(f"λ={v.lam:g}", (v.robust_acc, v.clean_acc), textcoords="offset points", xytext=(4, 3),
                        fontsize=7, color=f"C{i}")
    if chosen is not None and chosen.robust_acc is not None:
        ax.plot(chosen.robust_acc, chosen.clean_acc, "*", ms=16, mfc="none", mec="red", mew=1.5, label="selected")
    ax.set_xlabel("robust accuracy (RA)")
    ax.set_ylabel("clean accuracy (SA)")
    ax.set_title("SA vs RA per width, one point per λ")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _latency(ax: Any, variants: Sequence[Variant], key: str, chosen: Variant | None,
             budget: dict[str, float | None]) -> None:
    """SA vs p50 latency; the SA/RA/latency Pareto front outlined, the budget and its choice marked."""
    timed = [v for v in variants if v.latency_ms is not None and v.clean_acc is not None]
    if not timed:
        ax.text(0.5, 0.5, f"no latency profile for\n{key}\nrun `oatdeploy profile` on this device", ha="center",
                va="center", transform=ax.transAxes, fontsize=9)
        ax.set_axis_off()
        return
    for i, (width, group) in enumerate(_by_width(timed).items()):
        ax.scatter([v.latency_ms for v in group], [v.clean_acc for v in group], color=f"C{i}", s=30,
                   label=f"width {width:g}", zorder=3)
        for v in group:
            ax.annotate(f"λ={v.lam:g}", (v.latency_ms, v.clean_acc), textcoords="offset points", xytext=(4, 3),
                        fontsize=7, color=f"C{i}")
    front = pareto_front(timed)
    ax.scatter([v.latency_ms for v in front], [v.clean_acc for v in front], s=110, facecolors="none",
               edgecolors="black", linewidths=1.0, zorder=4, label="Pareto front (SA, RA, latency)")
    if budget.get("max_latency_ms") is not None:
        ax.axvline(budget["max_latency_ms"], color="red", ls="--", lw=1, label="latency budget")
    if chosen is not None and chosen.latency_ms is not None:
        ax.plot(chosen.latency_ms, chosen.clean_acc, "*", ms=16, mfc="none", mec="red", mew=1.5,
                label=f"selected: {chosen.id}")
    ax.set_xlabel("latency p50 (ms)")
    ax.set_ylabel("clean accuracy (SA)")
    ax.set_title(key, fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def plot_deployment(variants: Sequence[Variant], key: str, out: str | Path, chosen: Variant | None = None,
                    budget: dict[str, float | None] | None = None, title: str = "") -> Path:
    """Write the two-panel PNG atomically (a failed draw leaves an older plot in place)."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    try:
        _tradeoff(left, variants, chosen)
        _latency(right, variants, key, chosen, budget or {})
        if title:
            fig.suptitle(title, fontsize=10)
        fig.tight_layout()
        atomic_save(out, lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    finally:
        plt.close(fig)
    return Path(out)
