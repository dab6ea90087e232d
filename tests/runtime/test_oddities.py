"""Silent oddities of #21 item 8 on the device: a symlinked manifest is written through, not replaced; NaN or
infinite input is said, not served silently."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from oatdeploy.runtime import Deployment
from oatdeploy.runtime.errors import ArtifactError, OatWarning
from oatdeploy.runtime.folder import update_variants


def test_a_symlinked_manifest_is_written_through(folded: Path) -> None:
    (folded / "kept").mkdir()
    (folded / "manifest.json").rename(folded / "kept" / "manifest.json")
    (folded / "manifest.json").symlink_to("kept/manifest.json")
    update_variants(folded, lambda v: v.extra.update(note="here"))
    assert (folded / "manifest.json").is_symlink()
    assert json.loads((folded / "kept" / "manifest.json").read_text())["variants"][0]["note"] == "here"


def test_a_symlinked_manifest_leading_outside_is_not_written(folded: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.json"
    shutil.move(str(folded / "manifest.json"), outside)
    (folded / "manifest.json").symlink_to(outside)
    before = outside.read_bytes()
    with pytest.raises(ArtifactError, match="leads outside the deployment folder"):
        update_variants(folded, lambda v: v.extra.update(note="here"))
    assert outside.read_bytes() == before and (folded / "manifest.json").is_symlink()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_infinite_input_is_said(folded: Path, bad: float) -> None:
    dep = Deployment.load(folded)
    runner = dep.runner(dep.variants_for()[0], device="cpu")
    x = dep.sample_input(2)
    x[1, 0, 0, 0] = bad
    with pytest.warns(OatWarning, match="NaN or infinite values"):
        runner.infer(x)
    runner.close()
