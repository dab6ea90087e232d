"""Export: exact folded/shared ONNX under ONNX Runtime, plain graphs, verification, manifest, atomicity."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import oatdeploy
from oatdeploy.export import parity
from oatdeploy.export.onnx_export import export_onnx, op_types
from oatdeploy.export.parity import check_parity, cpu_session, run_graph
from oatdeploy.export.pipeline import export_deployment
from oatdeploy.runtime import Deployment
from oatdeploy.runtime.atomic import sha256_file
from oatdeploy.runtime.errors import ArtifactError
from oatdeploy.runtime.folder import load_manifest
from tests.conftest import export_run, oatdeploy_cli, train_run


@pytest.fixture(scope="module")
def folded(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_run(trained_run, tmp_path_factory.mktemp("deploy") / "fm")


@pytest.fixture(scope="module")
def shared(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_run(trained_run, tmp_path_factory.mktemp("deploy") / "fm-shared", "shared")


def test_every_folded_graph_matches_the_supernet_and_is_plain(folded: Path, trained_run: Path) -> None:
    sn = oatdeploy.load_checkpoint(trained_run / "supernet.pt")
    manifest = load_manifest(folded).to_json()
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
    manifest = load_manifest(shared).to_json()
    assert len({v["onnx"] for v in manifest["variants"]}) == len(sn.widths)
    x = torch.rand(4, 1, 28, 28)
    for v in manifest["variants"]:
        assert sn.lambdas[v["lam_index"]] == v["lambda"]
        out = run_graph(cpu_session(shared / v["onnx"]), x.numpy(), v["lam_index"])
        assert np.abs(out - sn.predict(x, v["lambda"], v["width"]).numpy()).max() < 1e-4


@pytest.mark.parametrize(("arch", "shape", "film", "head"), [("resnet20", (3, 32, 32), "mlp", False),
                                                         ("resnet34", (3, 32, 32), "mlp", False),
                                                         ("resnet20", (3, 32, 32), "linear", True)])
def test_random_init_export_is_exact(arch: str, shape: tuple[int, int, int], film: str, head: bool,
                                     tmp_path: Path) -> None:
    from tests.test_models import LAMBDAS, WIDTHS, randomized_supernet

    sn = randomized_supernet(arch, shape[0], shape[1], film=film, lambda_head=head)
    x = torch.rand(2, *shape)
    for w in WIDTHS:
        shared_path = export_onnx(sn.shared_subnet(w), tmp_path / f"shared-{w}.onnx", shape, shared=True)
        assert "BatchNormalization" not in op_types(shared_path)
        for lam in LAMBDAS:
            reference = sn.predict(x, lam, w).numpy()
            path = export_onnx(sn.subnet(lam, w), tmp_path / f"{lam}-{w}.onnx", shape)
            ops = op_types(path)
            assert "BatchNormalization" not in ops and ops.count("Gemm") + ops.count("MatMul") <= 1, ops
            diff = np.abs(run_graph(cpu_session(path), x.numpy()) - reference).max()
            assert diff < 1e-4, (arch, lam, w, diff)
            shared_out = run_graph(cpu_session(shared_path), x.numpy(), sn.lam_index(lam))
            assert np.abs(shared_out - reference).max() < 1e-4, (arch, "shared", lam, w)


def test_verification_catches_a_corrupted_weight(folded: Path, trained_run: Path, tmp_path: Path) -> None:
    sn = oatdeploy.load_checkpoint(trained_run / "supernet.pt")
    v = load_manifest(folded).to_json()["variants"][-1]
    model = onnx.load(str(folded / v["onnx"]))
    weight = model.graph.initializer[0]
    array = numpy_helper.to_array(weight).copy()
    array += 0.5  # every weight of the first layer: a change no ReLU can hide
    weight.CopyFrom(numpy_helper.from_array(array, weight.name))
    onnx.save(model, str(tmp_path / "bad.onnx"))
    x = torch.rand(8, 1, 28, 28)
    reference = sn.predict(x, v["lambda"], v["width"]).numpy()
    assert check_parity(cpu_session(folded / v["onnx"]), x.numpy(), reference, "good").max_abs_diff < 1e-4
    with pytest.raises(ArtifactError, match="differs from the supernet"):
        check_parity(cpu_session(tmp_path / "bad.onnx"), x.numpy(), reference, "bad")


def test_manifest_round_trip(folded: Path, trained_run: Path) -> None:
    manifest = json.loads((folded / "manifest.json").read_text())
    assert manifest == load_manifest(folded).to_json()  # the reader accepts it, every sha256 matches, nothing lost
    assert manifest["format"] == "oatdeploy-manifest" and manifest["version"] == 1
    assert set(manifest) >= {"model", "threat_model", "source", "calibration", "verification", "metrics_source"}
    assert manifest["model"]["input_shape"] == [1, 28, 28] and manifest["model"]["lambdas"] == [0.0, 0.4, 1.0]
    assert manifest["model"]["input_range"] == [0.0, 1.0] and manifest["model"]["dataset"] == "fmnist-mini"
    assert manifest["threat_model"] == {"norm": "linf", "eps": 0.1, "attack": "pgd", "steps": 5}
    assert manifest["source"] == {"checkpoint": "supernet.pt",
                                  "checkpoint_sha256": sha256_file(trained_run / "supernet.pt")}
    assert manifest["metrics_source"]["attack"]["steps"] == 5 and manifest["metrics_source"]["num_samples"] == 128
    for entry in (manifest["calibration"], manifest["verification"]["clean"]):
        assert entry["sha256"] == sha256_file(folded / entry["path"])
    calib, clean = np.load(folded / "calib.npz"), np.load(folded / "verify/clean.npz")
    assert calib["x"].dtype == np.float32 and calib["x"].shape == (64, 1, 28, 28)
    assert clean["x"].shape == (64, 1, 28, 28) and clean["y"].dtype == np.int64
    eval_rows = {(r["lambda"], r["width"]): r for r in json.loads((trained_run / "eval.json").read_text())["results"]}
    for v in manifest["variants"]:
        assert v["id"] == f"lam{v['lambda']:g}-w{v['width']:g}" and v["mode"] == "folded" and "lam_index" not in v
        assert v["sha256"] == sha256_file(folded / v["onnx"])
        assert v["adv_examples"]["sha256"] == sha256_file(folded / v["adv_examples"]["path"])
        assert v["params"] > 0 and v["flops"] > 0 and v["engines"] == [] and v["latency"] == {}
        assert v["metrics"]["clean_acc"] == eval_rows[v["lambda"], v["width"]]["clean_acc"]
        assert v["metrics"]["robust_acc"] == eval_rows[v["lambda"], v["width"]]["robust_acc"]
        assert v["metrics"]["attack"] == "pgd-5"
        adv = np.load(folded / v["adv_examples"]["path"])
        assert np.abs(adv["x_adv"] - clean["x"]).max() <= 0.1 + 1e-6 and (adv["y"] == clean["y"]).all()
    small = {v["width"]: v["flops"] for v in manifest["variants"]}
    assert small[0.5] < small[1.0] / 2


def test_export_carries_each_images_outcome_for_the_paired_test(folded: Path, trained_run: Path) -> None:
    """eval.json's per-image outcomes travel into the deployment (sha256-checked) and reach `select` intact."""
    from oatdeploy.evaluate import unpack_mask

    report = json.loads((trained_run / "eval.json").read_text())
    ref = json.loads((folded / "manifest.json").read_text())["outcomes"]["fp32"]
    assert ref["samples"] == 128 and ref["sha256"] == sha256_file(folded / ref["path"])
    dep = Deployment.load(folded)
    for v, row in zip(dep.variants, report["results"], strict=True):
        assert (v.lam, v.width) == (row["lambda"], row["width"]) and v.outcomes is not None
        for kind in ("clean", "robust"):
            bits = bin(v.outcomes.bits(kind))[2:].zfill(128)  # image 0 is the highest bit
            assert [b == "1" for b in bits] == list(unpack_mask(row[f"{kind}_correct"], 128))
            assert sum(b == "1" for b in bits) / 128 == row[f"{kind}_acc"]
    assert any("McNemar" in r or "only variant" in r or "no latency limit" in r for r in dep.choose().reasons())


def test_failed_export_leaves_the_good_deployment_untouched(folded: Path, trained_run: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    before = {p: p.read_bytes() for p in folded.rglob("*") if p.is_file()}
    monkeypatch.setattr(parity, "DEFAULT_TOLERANCE", -1.0)  # every graph now fails verification, late in the export
    with pytest.raises(ArtifactError, match="differs from the supernet"):
        export_deployment(trained_run / "supernet.pt", folded, verify_samples=8, calib_samples=8, adv_steps=1,
                          progress=False)
    bad = tmp_path / "supernet.pt"
    bad.write_bytes((trained_run / "supernet.pt").read_bytes()[:5000])  # a truncated checkpoint
    with pytest.raises(ArtifactError, match="not a readable oatdeploy checkpoint"):
        export_deployment(bad, folded, progress=False)
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
    (["{ckpt}", "--out", "{tmp}/d", "--eval-json", "{tmp}/junk.pt"], "not an eval.json"),
    (["{ckpt}", "--out", "{tmp}/d", "--verify-samples", "0"], "--verify-samples"),
])
def test_export_bad_input_exits_2(args: list[str], needle: str, tmp_path: Path, tiny_ckpt: Path) -> None:
    (tmp_path / "junk.pt").write_bytes(b"junk")
    result = oatdeploy_cli("export", *[a.replace("{tmp}", str(tmp_path)).replace("{ckpt}", str(tiny_ckpt))
                                       for a in args])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    # Our own errors are one line; click's usage errors add its usual usage lines around one "Error:" line.
    assert len([line for line in result.stderr.splitlines() if needle in line]) == 1, result.stderr
    if not needle.startswith("--"):
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "d").exists()


def test_a_stale_eval_json_is_ignored(tiny_ckpt: Path, trained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train_run(run, max_steps=1)
    (run / "eval.json").write_text((trained_run / "eval.json").read_text())  # another checkpoint's numbers
    manifest = export_deployment(run / "supernet.pt", tmp_path / "d", verify_samples=4, calib_samples=4,
                                 adv_steps=1, progress=False)
    assert manifest.variants[0].metrics.clean_acc is None
    assert manifest.metrics_source.origin is None and "oatdeploy eval" in manifest.metrics_source.note


def test_shared_mode_serves_the_same_function_with_one_graph_per_width(profiled_deploy: Path, shared: Path) -> None:
    folded, shared = Deployment.load(profiled_deploy), Deployment.load(shared)
    assert {v.id for v in folded.variants} == {v.id for v in shared.variants}
    assert len({v.path for v in shared.variants}) == 2
    x = shared.sample_input(8)
    sw = shared.switcher(history=100)
    assert len(sw._runners) == 2
    for v in folded.variants:
        sw.use(v.id)
        with folded.runner(v) as r:
            np.testing.assert_allclose(sw(x), r.infer(x), atol=1e-4)
    assert list(sw.served) == [v.id for v in folded.variants]


def test_export_force_keeps_what_the_user_put_in_the_deployment(cli, tiny_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "d"
    args = ("export", str(tiny_ckpt), "--out", str(out), "--verify-samples", "4", "--calib-samples", "4", "--quiet")
    assert cli(*args).returncode == 0
    (out / "info.md").write_text("served on the robot since May")
    (out / "NOTES.txt").write_text("mine")
    (out / "plots").mkdir()
    (out / "plots" / "trade-off.png").write_bytes(b"\x89PNG")
    first = json.loads((out / "manifest.json").read_text())["created"]
    dead = subprocess.Popen(["true"])
    dead.wait()
    debris = tmp_path / f".d.new-{dead.pid}@{socket.gethostname()}@x1y2"  # a staging folder of a killed export
    (debris / "verify").mkdir(parents=True)
    result = cli(*args, "--force")
    assert result.returncode == 0, result.stderr
    assert "kept in" in result.stderr and "info.md" in result.stderr
    assert (out / "info.md").read_text() == "served on the robot since May"
    assert (out / "NOTES.txt").read_text() == "mine"
    assert (out / "plots" / "trade-off.png").read_bytes() == b"\x89PNG"
    assert load_manifest(out).variants and json.loads((out / "manifest.json").read_text())["created"] >= first
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # nothing left beside it


def test_export_force_refuses_when_a_users_file_has_a_name_the_export_writes(cli, tiny_ckpt: Path,
                                                                            tmp_path: Path) -> None:
    out = tmp_path / "d"
    args = ("export", str(tiny_ckpt), "--out", str(out), "--verify-samples", "4", "--calib-samples", "4", "--quiet")
    assert cli(*args).returncode == 0
    (out / "w0.5.onnx").write_text("a user's file")  # shared mode writes a graph of this name
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".manifest.lock"}
    result = cli(*args, "--force", "--mode", "shared")
    assert result.returncode == 2 and "w0.5.onnx, which the new export also writes" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".manifest.lock"} == before


@pytest.fixture(scope="module")
def tiny_eval(tiny_ckpt: Path) -> dict:
    from oatdeploy.evaluate import run_evaluation

    return run_evaluation(tiny_ckpt, pgd_steps=1, limit=8, progress=False)


@pytest.mark.parametrize(("edit", "says"), [
    (lambda r: r["results"][0].update(clean_acc=float("nan")), "variants[0].metrics.clean_acc"),
    (lambda r: r["attack"].update(eps=float("inf")), "metrics_source.attack.eps is not a finite number"),
    (lambda r: r["results"][1].update(robust_acc=1.5), "robust_acc"),
    (lambda r: r["results"][0].pop("clean_acc"), "results[0] without clean_acc"),
    (lambda r: r["results"].__setitem__(0, "row"), "results[0] without lambda"),
    (lambda r: r.update(attack="pgd"), "no attack object with a name"),
])
def test_export_refuses_an_evaluation_the_device_would_refuse_before_replacing_anything(
        cli, tiny_ckpt: Path, tiny_eval: dict, tmp_path: Path, edit, says: str) -> None:
    report = json.loads(json.dumps(tiny_eval))
    edit(report)
    (tmp_path / "eval.json").write_text(json.dumps(report))
    out = tmp_path / "d"
    result = cli("export", str(tiny_ckpt), "--out", str(out), "--eval-json", str(tmp_path / "eval.json"),
                 "--verify-samples", "4", "--calib-samples", "4", "--quiet")
    assert result.returncode == 2 and says in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def scaled_logits_graph(path: Path, scale: float) -> None:
    """A real ONNX graph computing logits = scale * input [N, 10] (a network whose logits reach |2,000|)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["input", "scale"], ["logits"])], "scaled",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 10])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [numpy_helper.from_array(np.array(scale, np.float32), "scale")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))


def test_parity_tolerance_scales_with_the_logits(tmp_path: Path) -> None:
    """#21: logits up to 2,179 that differ by 1.2e-3 (6e-7 relative) are a correct export, not a wrong one."""
    scaled_logits_graph(tmp_path / "big.onnx", 2179.0)
    x = np.random.default_rng(0).uniform(-1, 1, (8, 10)).astype(np.float32)
    x[0, 0] = 1.0
    exact = x.astype(np.float64) * 2179.0
    session = cpu_session(tmp_path / "big.onnx")
    check = check_parity(session, x, exact + 1.2e-3, "big logits")  # the supernet's own fp32 rounding
    assert 1.1e-3 < check.max_abs_diff < 1.3e-3 and check.top1_agreement == 1.0
    with pytest.raises(ArtifactError, match=r"tolerance 0\.0228 = 0\.001 \+ 1e-05 × max\|logit\| 2\.18e\+03"):
        check_parity(session, x, exact * 1.001, "wrong by 0.1 %")  # a wrong graph still fails
    scaled_logits_graph(tmp_path / "small.onnx", 1.0)
    with pytest.raises(ArtifactError, match="differs from the supernet"):
        check_parity(cpu_session(tmp_path / "small.onnx"), x, x + 1.2e-3, "small logits")
