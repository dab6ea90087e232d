"""Evaluation: the JSON contract, PGD never beats clean accuracy, and the ART APGD-CE option runs."""

from __future__ import annotations

import json
from pathlib import Path

import oatdeploy
from oatdeploy.data import load_dataset
from oatdeploy.evaluate import apgd_correct, format_table, unpack_mask


def test_eval_json_covers_every_lambda_and_width(trained_run: Path) -> None:
    report = json.loads((trained_run / "eval.json").read_text())
    assert report["attack"]["name"] == "pgd" and report["attack"]["steps"] == 5 and report["num_samples"] == 128
    assert report["split"] == "test" and report["split_note"] == "the test set"
    pairs = {(r["lambda"], r["width"]) for r in report["results"]}
    assert pairs == {(lam, w) for lam in (0.0, 0.4, 1.0) for w in (0.5, 1.0)}
    for row in report["results"]:
        assert 0.0 <= row["robust_acc"] <= row["clean_acc"] <= 1.0
        assert row["n"] == 128
        for kind in ("clean", "robust"):
            lo, hi = row[f"{kind}_ci95"]
            # 128 images: about ±8 points in the middle; even at 0 or 1 the Wilson interval is z²/(n + z²) ≈ 0.03 wide
            assert lo <= row[f"{kind}_acc"] <= hi and hi - lo > 0.025
            assert unpack_mask(row[f"{kind}_correct"], 128).mean() == row[f"{kind}_acc"]
    assert format_table(report).count("\n") == 5  # header, rule, 3 λs, the image count


def test_apgd_ce_through_art_is_at_most_clean_accuracy(trained_run: Path) -> None:
    sn = oatdeploy.load_checkpoint(trained_run / "supernet.pt")
    test = load_dataset("fmnist-mini", split="test", limit=16)
    sub = sn.subnet(1.0, 0.5)
    clean = float((sub(test.x).argmax(1) == test.y).float().mean())
    assert 0.0 <= float(apgd_correct(sub, test.x, test.y, eps=0.1, num_classes=10).float().mean()) <= clean
