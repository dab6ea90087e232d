"""Export: exact folded/shared ONNX under ONNX Runtime, plain graphs, verification, manifest, atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import oatdeploy_cli, train_run
from oatdeploy.export.onnx_export import export_onnx, op_types
from oatdeploy.export.pipeline import export_deployment
from oatdeploy.export.verify import cpu_session, run_graph, verify_graph
from oatdeploy.runtime.manifest import load_manifest
from onnx import numpy_helper

import oatdeploy
from oatdeploy.atomic import sha256_file
from oatdeploy.errors import ArtifactError


@pytest.fixture(scope="module")
def folded(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deploy") / "fm"
    export_deployment(trained_run / "supernet.pt", out, verify_samples=64, calib_samples=32, adv_steps=3,
                      progress=False)
    return out


@pytest.fixture(scope="module")
def shared(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deploy") / "fm-shared"
    export_deployment(trained_run / "supernet.pt", out, mode="shared", verify_samples=64, calib_samples=32,
                      adv_steps=3, progress=False)
    return out


def test_every_folded_graph_matches_the_supernet_and_is_plain(folded: Path, trained_run: Path) -> None:
    sn = oatdeploy.load_checkpoint(trained_run / "supernet.pt")
    manifest = load_manifest(folded)
    assert {(v["lambda"], v["width"]) for v in manifest["variants"]} == {
        (lam, w) for lam in sn.lambdas for w in sn.widths}
    x = torch.rand(5, 1, 28, 28)
    for v in manifest["variants"]:
        ops = op_types(folded / v["onnx"])
        assert "BatchNormalization" not in ops and ops.count("Gemm") + ops.count("MatMul") <= 1
        assert set(ops) <= {"Conv", "Relu", "Add", "GlobalAveragePool", "Flatten", "Gemm"}, set(ops)
        out = run_graph(cpu_session(folded / v["onnx"]), x.numpy())
        assert np.abs(out - sn.predict(x, v["lambda"], v["width"]).numpy()).max() < 1e-4
        assert v["verification"]["max_abs_diff"] < 1e-4 and v["verification"]["top1_agreement"] == 1.0


def test_shared_graph_is_exact_for_every_lambda(shared: Path, trained_run: Path) -> None:
    sn = oatdeploy.load_checkpoint(trained_run / "supernet.pt")
    manifest = load_manifest(shared)
    assert len({v["onnx"] for v in manifest["variants"]}) == len(sn.widths)
    x = torch.rand(4, 1, 28, 28)
    for v in manifest["variants"]:
        assert sn.lambdas[v["lam_index"]] == v["lambda"]
        out = run_graph(cpu_session(shared / v["onnx"]), x.numpy(), v["lam_index"])
        assert np.abs(out - sn.predict(x, v["lambda"], v["width"]).numpy()).max() < 1e-4


@pytest.mark.parametrize(("arch", "shape"), [("resnet20", (3, 32, 32)), ("resnet34", (3, 32, 32))])
def test_random_init_export_is_exact(arch: str, shape: tuple[int, int, int], tmp_path: Path) -> None:
    from test_models import LAMBDAS, WIDTHS, randomized_supernet

    sn = randomized_supernet(arch, shape[0], shape[1])
    x = torch.rand(2, *shape)
    for w in WIDTHS:
        for lam in LAMBDAS:
            path = export_onnx(sn.subnet(lam, w), tmp_path / f"{lam}-{w}.onnx", shape)
            diff = np.abs(run_graph(cpu_session(path), x.numpy()) - sn.predict(x, lam, w).numpy()).max()
            assert diff < 1e-4, (arch, lam, w, diff)


def test_verification_catches_a_corrupted_weight(folded: Path, trained_run: Path, tmp_path: Path) -> None:
    sn = oatdeploy.load_checkpoint(trained_run / "supernet.pt")
    v = load_manifest(folded)["variants"][-1]
    model = onnx.load(str(folded / v["onnx"]))
    weight = model.graph.initializer[0]
    array = numpy_helper.to_array(weight).copy()
    array.flat[0] += 0.5
    weight.CopyFrom(numpy_helper.from_array(array, weight.name))
    onnx.save(model, str(tmp_path / "bad.onnx"))
    x = torch.rand(8, 1, 28, 28)
    reference = sn.predict(x, v["lambda"], v["width"]).numpy()
    assert verify_graph(cpu_session(folded / v["onnx"]), x.numpy(), reference, "good")["max_abs_diff"] < 1e-4
    with pytest.raises(ArtifactError, match="differs from the supernet"):
        verify_graph(cpu_session(tmp_path / "bad.onnx"), x.numpy(), reference, "bad")


def test_manifest_round_trip(folded: Path, trained_run: Path) -> None:
    manifest = json.loads((folded / "manifest.json").read_text())
    assert manifest["format"] == "oatdeploy-manifest" and manifest["version"] == 1
    assert manifest["model"]["input_shape"] == [1, 28, 28] and manifest["model"]["lambdas"] == [0.0, 0.4, 1.0]
    assert manifest["threat_model"] == {"norm": "linf", "eps": 0.1, "attack": "pgd", "steps": 5}
    assert manifest["source"]["checkpoint_sha256"] == sha256_file(trained_run / "supernet.pt")
    eval_rows = {(r["lambda"], r["width"]): r for r in json.loads((trained_run / "eval.json").read_text())["results"]}
    for v in manifest["variants"]:
        assert v["sha256"] == sha256_file(folded / v["onnx"])
        assert v["params"] > 0 and v["flops"] > 0 and v["engines"] == [] and v["latency"] == {}
        assert v["metrics"]["clean_acc"] == eval_rows[v["lambda"], v["width"]]["clean_acc"]
        assert v["metrics"]["attack"] == "pgd-5"
        adv = np.load(folded / v["adv_examples"]["path"])
        clean = np.load(folded / "verify/clean.npz")
        assert np.abs(adv["x_adv"] - clean["x"]).max() <= 0.1 + 1e-6
    small = {v["width"]: v["flops"] for v in manifest["variants"]}
    assert small[0.5] < small[1.0] / 2


def test_failed_export_leaves_the_good_deployment_untouched(folded: Path, trained_run: Path) -> None:
    before = {p: p.read_bytes() for p in folded.rglob("*") if p.is_file()}
    with pytest.raises(ArtifactError):
        export_deployment(trained_run / "supernet.pt", folded, verify_samples=8, calib_samples=8, adv_steps=1,
                          tolerance=-1.0, progress=False)
    assert {p: p.read_bytes() for p in folded.rglob("*") if p.is_file()} == before
    assert [p.name for p in folded.parent.iterdir() if p.name.startswith(".")] == []


def test_export_refuses_to_replace_a_folder_that_is_not_a_deployment(trained_run: Path, tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    result = oatdeploy_cli("export", str(trained_run / "supernet.pt"), "--out", str(tmp_path / "mine"))
    assert result.returncode == 2 and "not an oatdeploy deployment" in result.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(("args", "needle"), [
    (["{tmp}/missing.pt", "--out", "{tmp}/d"], "checkpoint not found"),
    (["{tmp}/junk.pt", "--out", "{tmp}/d"], "not a readable oatdeploy checkpoint"),
    (["{ckpt}", "--out", "{tmp}/d", "--mode", "both"], "--mode"),
    (["{ckpt}", "--out", "{tmp}/d", "--eval-json", "{tmp}/none.json"], "does not exist"),
])
def test_export_bad_input_exits_2(args: list[str], needle: str, tmp_path: Path, tiny_ckpt: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"junk")
    result = oatdeploy_cli("export", *[a.replace("{tmp}", str(tmp_path)).replace("{ckpt}", str(tiny_ckpt))
                                       for a in args])
    assert result.returncode == 2 and needle in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "d").exists()


def test_a_stale_eval_json_is_ignored(tiny_ckpt: Path, trained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train_run(run, max_steps=1)
    (run / "eval.json").write_text((trained_run / "eval.json").read_text())  # another checkpoint's numbers
    manifest = export_deployment(run / "supernet.pt", tmp_path / "d", verify_samples=4, calib_samples=4,
                                 adv_steps=1, progress=False)
    assert manifest["variants"][0]["metrics"]["clean_acc"] is None
