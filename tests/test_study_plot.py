"""The README's study plot (benchmarks/study_oat_vs_dedicated.py), redrawn from its saved results: error bars over
seeds on both axes and λ labels that overlap nothing."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "oat_vs_dedicated_cpu.json"


def test_the_study_plot_has_error_bars_over_seeds_and_labels_that_overlap_nothing() -> None:
    import matplotlib.pyplot as plt
    from matplotlib.container import ErrorbarContainer
    from matplotlib.text import Text

    spec = importlib.util.spec_from_file_location("study", ROOT / "benchmarks" / "study_oat_vs_dedicated.py")
    study = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(study)  # type: ignore[union-attr]
    saved = json.loads(RESULTS.read_text())
    fig = study.draw(saved["summary"], "cpu", saved["meta"]["seeds"])
    try:
        whole, zoom = fig.axes
        bars = [c for c in zoom.containers if isinstance(c, ErrorbarContainer)]
        assert len(bars) == 3 and all(c.has_xerr and c.has_yerr for c in bars)
        assert "half the range" in fig.get_suptitle() and "seeds 0, 1" in fig.get_suptitle()
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        for ax, count in ((whole, 3), (zoom, 15)):  # λ = 0 on the left, the other 5 λs × 3 groups enlarged
            boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]  # the words, not their leader lines
            assert len(boxes) == count
            assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    finally:
        plt.close(fig)
