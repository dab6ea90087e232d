"""`oatdeploy plot`: a real PNG of a real profiled deployment that tells the truth: intervals and latency spread,
axes that do not zoom into noise, labels that collide with nothing, each plane's own Pareto front, every budget
drawn and said in words, clear errors."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from oatdeploy.runtime import Budget, Deployment, NoFeasibleVariant, pareto_front
from oatdeploy.runtime.errors import OatError
from oatdeploy.runtime.plots import MIN_SPAN, Outcome, accuracy_limits, draw_deployment, plot_deployment
from tests.conftest import oatdeploy_cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def read_png(path: Path) -> tuple[int, int]:
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_MAGIC
    img = matplotlib.image.imread(path)
    return img.shape[0], img.shape[1]


def test_plot_marks_what_select_chooses(profiled_deploy: Path, tmp_path: Path) -> None:
    out = tmp_path / "plot.png"
    budget = ["--max-latency-ms", "1000", "--min-robust-acc", "0"]
    result = oatdeploy_cli("plot", str(profiled_deploy), "--out", str(out), *budget)
    assert result.returncode == 0, result.stderr
    chosen = json.loads(oatdeploy_cli("select", str(profiled_deploy), *budget, "--format", "json").stdout)
    assert f"selected: {chosen['id']} " in result.stdout
    height, width = read_png(out)
    assert width > height > 300


def test_plot_defaults_into_the_deployment_and_keeps_its_manifest(profiled_deploy: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(profiled_deploy, tmp_path / "d"))
    before = (copy / "manifest.json").read_bytes()
    result = oatdeploy_cli("plot", str(copy))
    assert result.returncode == 0, result.stderr
    read_png(copy / "tradeoff-ort-fp32.png")
    assert (copy / "manifest.json").read_bytes() == before
    Deployment.load(copy)


def test_plot_without_profile_draws_the_tradeoff_and_a_latency_budget_asks_for_one(profiled_deploy: Path,
                                                                                    tmp_path: Path) -> None:
    out = tmp_path / "b64.png"
    result = oatdeploy_cli("plot", str(profiled_deploy), "--batch-size", "64", "--out", str(out))
    assert result.returncode == 0, result.stderr
    read_png(out)
    result = oatdeploy_cli("plot", str(profiled_deploy), "--batch-size", "64", "--max-latency-ms", "1",
                           "--out", str(tmp_path / "never.png"))
    assert result.returncode == 2
    assert "no latency profile" in result.stderr and "oatdeploy profile" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "never.png").exists()


def test_a_failed_draw_leaves_the_old_plot(profiled_deploy: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    dep = Deployment.load(profiled_deploy)
    out = tmp_path / "p.png"
    plot_deployment(dep.variants, dep.key(), out)
    good = out.read_bytes()

    def half_written(self: Figure, path: Path, **kwargs: object) -> None:
        Path(path).write_bytes(PNG_MAGIC)
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", half_written)
    with pytest.raises(OSError, match="disk full"):
        plot_deployment(dep.variants, dep.key(), out)
    assert out.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["p.png"]


def test_missing_deployment_is_exit_2(tmp_path: Path) -> None:
    result = oatdeploy_cli("plot", str(tmp_path / "nothing"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1


def test_oat_error_when_matplotlib_is_missing(monkeypatch: pytest.MonkeyPatch, profiled_deploy: Path,
                                              tmp_path: Path) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    dep = Deployment.load(profiled_deploy)
    with pytest.raises(OatError, match=r"oatdeploy\[plot\]"):
        plot_deployment(dep.variants, dep.key(), tmp_path / "x.png")


def outcomes_for(dep: Deployment, *budgets: Budget) -> list[Outcome]:
    out = []
    for budget in budgets:
        try:
            out.append(Outcome(budget, dep.choose(budget)))
        except NoFeasibleVariant as e:
            out.append(Outcome(budget, error=str(e)))
    return out


@pytest.fixture(scope="module")
def drawn(profiled_deploy: Path) -> Iterator[tuple]:
    """The figure for two budgets, one met and one that nothing meets, as the demo draws it."""
    import matplotlib.pyplot as plt

    dep = Deployment.load(profiled_deploy)
    fastest = min(v.latency_ms for v in dep.variants)
    outcomes = outcomes_for(dep, Budget(max_latency_ms=1.5 * fastest, min_robust_acc=0.0), Budget(min_robust_acc=0.99))
    fig = draw_deployment(dep.variants, dep.key(), outcomes, title="t")
    yield dep, outcomes, fig
    plt.close(fig)


def test_every_point_carries_its_interval_and_latency_spread(drawn: tuple) -> None:
    from matplotlib.container import ErrorbarContainer

    dep, _, fig = drawn
    left, right = fig.axes[:2]
    for ax in (left, right):
        bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        assert bars and all(c.has_xerr and c.has_yerr for c in bars)
    assert all(v.clean_ci95 and v.robust_ci95 and v.latency_spread_ms for v in dep.variants)


def test_axes_hold_every_interval_and_do_not_zoom_into_noise(drawn: tuple) -> None:
    dep, _, fig = drawn
    left, right = fig.axes[:2]
    for ax in (left, right):
        lo, hi = ax.get_ylim()
        assert hi - lo >= MIN_SPAN - 1e-9
        assert all(lo <= v.clean_ci95[0] and v.clean_ci95[1] <= hi for v in dep.variants)
    lo, hi = left.get_xlim()
    assert hi - lo >= MIN_SPAN - 1e-9 and all(lo <= v.robust_ci95[0] and v.robust_ci95[1] <= hi for v in dep.variants)
    assert right.get_xlim()[0] == 0 and all(v.latency_spread_ms[1] <= right.get_xlim()[1] for v in dep.variants)
    # the demo's window in the issue: SA 0.766-0.782 without intervals still gets ten points
    assert accuracy_limits([0.766, 0.782], [None, None])[1] - accuracy_limits([0.766, 0.782], [None, None])[0] >= 0.1


def test_labels_overlap_nothing_and_stay_inside_the_figure(drawn: tuple) -> None:
    _, _, fig = drawn
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox
    for ax in fig.axes[:2]:
        boxes = [t.get_window_extent(renderer) for t in ax.texts]
        assert len(boxes) >= 6
        inside = ax.get_window_extent(renderer)
        for i, a in enumerate(boxes):
            assert inside.x0 <= a.x0 and a.x1 <= inside.x1 and inside.y0 <= a.y0 and a.y1 <= inside.y1
            assert not any(a.overlaps(b) for b in boxes[i + 1:]), [t.get_text() for t in ax.texts]
    for text in [*fig.texts, *fig.axes[2].texts, *(ax.title for ax in fig.axes[:2])]:
        box = text.get_window_extent(renderer)
        assert canvas.x0 <= box.x0 and box.x1 <= canvas.x1 and canvas.y0 <= box.y0 and box.y1 <= canvas.y1, text


def test_titles_read_as_words_and_each_plane_rings_its_own_front(drawn: tuple) -> None:
    dep, _, fig = drawn
    left, right = fig.axes[:2]
    title = " ".join(right.get_title().split())  # as read: wrapped lines, non-breaking spaces
    assert "|" not in title and "ONNX Runtime fp32, batch 1" in title
    for ax, axes in ((left, ("clean", "robust")), (right, ("clean", "latency"))):
        rings = next(c for c in ax.collections if c.get_gid() == "pareto-front").get_offsets()
        front = pareto_front(dep.variants, axes=axes)
        x = [(v.robust_acc if axes[1] == "robust" else v.latency_ms) for v in front]
        assert sorted(map(tuple, rings.tolist())) == sorted(zip(x, [v.clean_acc for v in front], strict=True))
        assert any("Pareto front of this plane" in t.get_text() for t in ax.get_legend().get_texts())


def test_every_budget_is_drawn_and_said_in_words(drawn: tuple) -> None:
    _, outcomes, fig = drawn
    left, right, words = fig.axes
    text = " ".join(t.get_text() for t in words.texts).replace("\n", " ")
    met, _ = outcomes
    assert f"Budget 1 (p50 ≤ {met.budget.max_latency_ms:.3g} ms, RA ≥ 0): chose {met.choice.variant.id}" in text
    assert "Budget 2 (RA ≥ 0.99): nothing chosen: no variant meets the budget" in text
    assert "robust accuracy binds" in text
    ra_lines = [ln.get_xdata()[0] for ln in left.get_lines() if ln.get_linestyle() == ":"]
    assert sorted(ra_lines) == [0.0, 0.99]  # both RA budgets, on the RA axis
    assert [ln.get_xdata()[0] for ln in right.get_lines() if ln.get_linestyle() == ":"] == [
        met.budget.max_latency_ms]
    assert any(t.get_text() == f"budget 1 chose {met.choice.variant.id}" for t in left.get_legend().get_texts())


def test_an_infeasible_budget_is_plotted_said_and_exits_as_select_does(profiled_deploy: Path, tmp_path: Path) -> None:
    out = tmp_path / "none.png"
    result = oatdeploy_cli("plot", str(profiled_deploy), "--min-robust-acc", "0.99", "--out", str(out))
    select = oatdeploy_cli("select", str(profiled_deploy), "--min-robust-acc", "0.99")
    assert result.returncode == select.returncode == 2
    assert result.stderr.count("\n") == 1 and "robust accuracy binds" in result.stderr and str(out) in result.stderr
    read_png(out)


def test_plot_without_matplotlib_is_one_line_exit_2(profiled_deploy: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    code = ("import sys; sys.modules['matplotlib'] = None; sys.modules['torch'] = None\n"
            "from oatdeploy.cli import main\n"
            f"main(['plot', {str(profiled_deploy)!r}, '--out', {str(tmp_path / 'x.png')!r}])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and 'pip install "oatdeploy[plot]"' in done.stderr


def crowded_twelve() -> list:
    """The issue's deployment: twelve variants (two widths, six λs) all within 0.17-0.25 ms."""
    from oatdeploy.runtime import Variant
    from oatdeploy.runtime.stats import wilson_interval

    out = []
    for wi, width in enumerate((0.5, 1.0)):
        for li, lam in enumerate((0.0, 0.1, 0.2, 0.3, 0.4, 1.0)):
            sa, ra = 0.80 - 0.01 * li + 0.01 * wi, 0.05 + 0.1 * li * (li > 0) + 0.02 * wi
            p50, n = 0.17 + 0.04 * wi + 0.003 * li, 300
            out.append(Variant(f"lam{lam:g}-w{width:g}", lam, width, sa, ra, p50, "x.onnx",
                               clean_ci95=wilson_interval(round(sa * n), n),
                               robust_ci95=wilson_interval(round(ra * n), n),
                               latency_spread_ms=(p50 - 0.004, p50 + 0.006)))
    return out


def test_the_latency_axis_fits_the_points_not_a_budget_far_beyond_them() -> None:
    import matplotlib.pyplot as plt

    from oatdeploy.runtime.selection import choose

    variants = crowded_twelve()
    budget = Budget(max_latency_ms=4.0, min_robust_acc=0.35)
    fig = draw_deployment(variants, "cpu|ort|fp32|b1", [Outcome(budget, choose(variants, budget))],
                          attack="PGD-20, L∞ ε = 0.1, 300 test images")
    try:
        left, right = fig.axes[:2]
        assert right.get_xlim()[1] < 0.4  # not 0-4.4 ms with every point in the first twentieth
        legend = [t.get_text() for t in right.get_legend().get_texts()]
        assert "budget 1: p50 ≤ 4 ms, beyond this axis (every point meets it)" in legend
        assert "PGD-20, L∞ ε = 0.1" in left.get_xlabel()
        for ax in (left, right):
            texts = [t.get_text() for t in ax.get_legend().get_texts()]
            assert "width 0.5: λ 0 to 1, joined in λ order" in texts and "width 1: λ 0 to 1, joined in λ order" in texts
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        boxes = [t.get_window_extent(renderer) for t in right.texts]
        assert len(boxes) == 12
        assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
        inside = right.get_window_extent(renderer)
        assert all(inside.x0 <= a.x0 and a.x1 <= inside.x1 and inside.y0 <= a.y0 and a.y1 <= inside.y1 for a in boxes)
        near = draw_deployment(variants, "cpu|ort|fp32|b1", [Outcome(Budget(max_latency_ms=0.3), None, "x")])
        assert near.axes[1].get_xlim()[1] >= 0.3  # a budget near the points is drawn where it is
        plt.close(near)
    finally:
        plt.close(fig)


def test_the_attack_and_its_eps_are_on_the_figure(profiled_deploy: Path, tmp_path: Path) -> None:
    from oatdeploy.runtime.plots import threat_text

    dep = Deployment.load(profiled_deploy)
    assert threat_text(dep.manifest) == "PGD-5, L∞ ε = 0.1, 128 test images"
