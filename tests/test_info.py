"""`oatdeploy info`: a deployment's variants, accuracy, cost, every device profile, engines and quantized models."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def rich_deploy(profiled_deploy: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The profiled deployment plus what other devices and commands add: a second device's profile, int8 models
    from `quantize`, their `verify` accuracy and a TensorRT engine record (as `build-engines` writes it)."""
    from oatdeploy.runtime.atomic import sha256_file
    from oatdeploy.runtime.quantize import quantize_deployment

    deploy = tmp_path_factory.mktemp("info") / "fm"
    shutil.copytree(profiled_deploy, deploy)
    quantize_deployment(deploy, precision="int8", calib_size=8, progress=False)
    manifest = json.loads((deploy / "manifest.json").read_text())
    (deploy / "engines").mkdir()
    engine = deploy / "engines" / "lam0-w0.5-fp16.engine"
    engine.write_bytes(b"an engine built on the Jetson")
    for i, v in enumerate(manifest["variants"]):
        v["latency"]["Orin|trt|fp16|b1"] = {"backend": "trt", "batch": 1, "precision": "fp16", "p50_ms": 0.5 + i,
                                            "p95_ms": 0.75 + i, "runs": 50}
        v["precision_metrics"] = {"int8": {"clean_acc": 0.5, "robust_acc": 0.25}}
        ra = v["metrics"]["robust_acc"]
        v["metrics"]["robust_ci95"] = [ra / 2, 0.5 + ra / 2]  # an interval holding RA, as eval.json gives them
        v["metrics"].pop("clean_ci95", None)  # and none for SA: no empty columns for them
    manifest["variants"][0]["engines"] = [{
        "path": "engines/lam0-w0.5-fp16.engine", "sha256": sha256_file(engine), "precision": "fp16",
        "device": "Orin", "trt_version": "10.3.0", "batch_profile": {"min": 1, "opt": 1, "max": 32}}]
    (deploy / "manifest.json").write_text(json.dumps(manifest))
    return deploy


def test_json_holds_every_variant_profile_engine_and_quantized_model(cli, rich_deploy: Path) -> None:
    result = cli("info", str(rich_deploy), "--format", "json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    manifest = json.loads((rich_deploy / "manifest.json").read_text())
    assert [v["id"] for v in info["variants"]] == [v["id"] for v in manifest["variants"]]
    assert len(info["profiles"]) == 2 and "Orin|trt|fp16|b1" in info["profiles"]
    for got, v in zip(info["variants"], manifest["variants"], strict=True):
        assert got["metrics"] == v["metrics"] and got["params"] == v["params"] and got["flops"] == v["flops"]
        assert got["latency"] == v["latency"] and got["quantized"] == {"int8": v["quantized"]["int8"]["onnx"]}
    assert info["variants"][0]["engines"][0]["device"] == "Orin"
    assert info["model"]["arch"] == "resnet20" and info["metrics_source"]["num_samples"] == 128
    assert cli("info", str(rich_deploy), "--format", "json").stdout == result.stdout


def test_table_shows_accuracy_cost_profiles_and_engines(cli, rich_deploy: Path) -> None:
    result = cli("info", str(rich_deploy))
    assert result.returncode == 0, result.stderr
    manifest = json.loads((rich_deploy / "manifest.json").read_text())
    text = result.stdout
    assert "resnet20 on fmnist-mini" in text and "(pgd-5, eps 0.1, 128 images)" in text
    first = manifest["variants"][0]
    row = next(line for line in text.splitlines() if line.startswith(first["id"] + " "))
    for cell in (f"{first['metrics']['clean_acc']:.3f}", f"{first['metrics']['robust_acc']:.3f}",
                 str(first["params"]), f"{first['flops'] / 1e6:.1f}", "int8", "fp16 Orin TensorRT 10.3.0 b1-32",
                 "{:.3f}–{:.3f}".format(*first["metrics"]["robust_ci95"])):
        assert cell in row, (cell, row)
    assert "[2] Orin|trt|fp16|b1" in text
    latency_rows = [line for line in text.splitlines() if line.startswith(first["id"] + " ")]
    assert "0.500 / 0.750" in latency_rows[-1]


def test_csv_and_markdown_have_one_row_per_variant(cli, rich_deploy: Path) -> None:
    manifest = json.loads((rich_deploy / "manifest.json").read_text())
    result = cli("info", str(rich_deploy), "--format", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["variant"] for r in rows] == [v["id"] for v in manifest["variants"]]
    assert float(rows[1]["p50 ms Orin|trt|fp16|b1"]) == 1.5 and float(rows[0]["RA int8"]) == 0.25
    assert float(rows[0]["SA"]) == manifest["variants"][0]["metrics"]["clean_acc"]  # unrounded, for a spreadsheet
    assert int(rows[0]["flops"]) == manifest["variants"][0]["flops"]
    ci = manifest["variants"][0]["metrics"]["robust_ci95"]
    assert [float(rows[0]["RA ci95 low"]), float(rows[0]["RA ci95 high"])] == ci
    assert "SA ci95 low" not in rows[0]  # no SA intervals in this manifest, so no empty columns

    md = cli("info", str(rich_deploy), "--format", "md").stdout.strip().splitlines()
    assert len(md) == len(manifest["variants"]) + 2 and md[1].startswith("|---|")
    assert "p50 ms Orin\\|trt\\|fp16\\|b1" in md[0]  # the key's pipes do not split the cell
    cells = [line.replace("\\|", "").count("|") for line in md]
    assert len(set(cells)) == 1


def test_an_unprofiled_deployment_says_how_to_profile(cli, rich_deploy: Path, tmp_path: Path) -> None:
    deploy = tmp_path / "d"
    shutil.copytree(rich_deploy, deploy)
    manifest = json.loads((deploy / "manifest.json").read_text())
    for v in manifest["variants"]:
        v["latency"] = {}
    (deploy / "manifest.json").write_text(json.dumps(manifest))
    assert "not profiled on any device yet (`oatdeploy profile DEPLOY`)" in cli("info", str(deploy)).stdout


def test_a_damaged_deployment_is_refused_unless_asked_to_look_anyway(cli, rich_deploy: Path, tmp_path: Path) -> None:
    deploy = tmp_path / "d"
    shutil.copytree(rich_deploy, deploy)
    (deploy / "engines" / "lam0-w0.5-fp16.engine").write_bytes(b"changed")
    result = cli("info", str(deploy))
    assert result.returncode == 2 and "does not match its sha256" in result.stderr
    assert cli("info", str(deploy), "--no-verify").returncode == 0
