"""`oatdeploy plot`: a real PNG of a real profiled deployment, the budget's choice marked, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import oatdeploy_cli

from oatdeploy.errors import OatError
from oatdeploy.plots import plot_deployment
from oatdeploy.runtime import Deployment

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
    chosen = json.loads(oatdeploy_cli("select", str(profiled_deploy), *budget, "--json").stdout)
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
    result = oatdeploy_cli("plot", str(profiled_deploy), "--batch", "64", "--out", str(out))
    assert result.returncode == 0, result.stderr
    read_png(out)
    result = oatdeploy_cli("plot", str(profiled_deploy), "--batch", "64", "--max-latency-ms", "1",
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
