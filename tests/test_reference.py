"""`oatdeploy import-reference`: the paper's checkpoints in, this project's supernet out, logits unchanged.

Every checkpoint here is built by `reference_models.reference_state` with the reference's key names and
shapes, saved the way its OAT.py saves (latest.pth dict or bare best_*.pth state_dict, DataParallel's
`module.` prefix or none), and compared with `reference_forward`, an oracle that shares no code with us.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

import oatdeploy
from oatdeploy.cli import main
from tests.reference_models import bn_entries, film_entries, reference_forward, reference_state

LAMBDAS = [0.0, 0.2, 1.0]


def reference_encoding(kind: str, dim: int) -> np.ndarray | None:
    """What OAT.py feeds FiLM for the j-th λ: row j of its encoding_mat (None: λ itself)."""
    if kind == "rand":
        return np.linalg.qr(np.random.default_rng(5).standard_normal((dim, dim)))[0]
    if kind == "onehot":
        return np.eye(dim)
    if kind == "dct":
        from scipy.fftpack import dct

        return dct(np.eye(dim), axis=0)
    return None


def save_reference(folder: Path, sd: dict[str, torch.Tensor], latest: bool, data_parallel: bool) -> Path:
    """As OAT.py saves: latest.pth = {'model': state_dict, 'optimizer': …, 'epoch': …, 'best_TA': …}, else best_ATA."""
    sd = {f"module.{k}" if data_parallel else k: v for k, v in sd.items()}
    if latest:
        path = folder / "latest.pth"
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1, momentum=0.9)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, 200)
        torch.save({"epoch": 199, "model": sd, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "best_TA": {v: 0.9 for v in LAMBDAS}, "best_ATA": {v: 0.5 for v in LAMBDAS},
                    "training_loss": [2.3, 1.1], "val_TA": {v: [0.8] for v in LAMBDAS},
                    "val_ATA": {v: [0.4] for v in LAMBDAS}}, path)
    else:
        path = folder / "best_ATA1.0.pth"
        torch.save(sd, path)
    return path


def run_cli(*args: str) -> tuple[int, str]:
    """The console entry point in-process: its exit code and stderr."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()), pytest.raises(SystemExit) as e:
        main(list(args))
    return int(e.value.code or 0), err.getvalue()


def import_args(ckpt: Path, out: Path, arch: str, kind: str, dataset: str, matrix: Path | None = None,
                widths: str | None = None, lambdas: list[float] = LAMBDAS) -> list[str]:
    args = ["import-reference", str(ckpt), "--arch", arch, "--lambdas", ",".join(f"{v:g}" for v in lambdas),
            "--encoding", kind, "--dataset", dataset, "--out", str(out)]
    args += ["--encoding-matrix", str(matrix)] if matrix else []
    return args + (["--widths", widths] if widths else [])


# (arch, dataset, encoding, dual BN, slimmable widths, --widths, saved as latest.pth, DataParallel prefix, λ order)
CASES = {
    "resnet34-dualbn-rand-latest": ("resnet34", "cifar10", "rand", True, None, None, True, True, [0.0, 0.2, 1.0]),
    "oats-resnet34-onebn-dct-best": ("resnet34", "cifar10", "dct", False, [0.5, 0.75, 1.0], None, False, False,
                                     [1.0, 0.0, 0.2]),
    "oats-resnet34-dualbn-none-2widths": ("resnet34", "cifar10", "none", True, [0.25, 1.0], "0.25,1", False, True,
                                          [0.0, 0.2, 1.0]),
    "wrn16_8-onebn-onehot-latest": ("wrn16_8", "svhn", "onehot", False, None, None, True, False, [0.0, 0.2, 1.0]),
    "wrn40_2-dualbn-rand-best": ("wrn40_2", "stl10", "rand", True, None, None, False, True, [0.2, 0.0, 1.0]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_imported_supernet_and_folded_nets_equal_the_reference(case: str, tmp_path: Path) -> None:
    arch, dataset, kind, dual, slim, widths_opt, latest, dp, lambdas = CASES[case]
    dim = 1 if kind == "none" else 16
    sd = reference_state(arch, dim, dual, slim)
    ckpt = save_reference(tmp_path, sd, latest, dp)
    enc = reference_encoding(kind, dim)
    matrix = None
    if kind == "rand":
        matrix = tmp_path / "rand_otho_mat.npy"
        np.save(matrix, enc)
    code, err = run_cli(*import_args(ckpt, tmp_path / "run", arch, kind, dataset, matrix, widths_opt, lambdas))
    assert code == 0, err
    sn = oatdeploy.load_checkpoint(tmp_path / "run" / "supernet.pt")
    assert sn.lambdas == sorted(lambdas) and sn.dual_bn == dual and sn.widths == (slim or [1.0])
    size = 96 if dataset == "stl10" else 32
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    for wi, w in enumerate(sn.widths):
        for j, lam in enumerate(lambdas):  # row j of the reference's table encodes its j-th λ choice
            row = torch.tensor([[lam]]) if enc is None else torch.tensor(enc[j : j + 1], dtype=torch.float32)
            ref = reference_forward(sd, arch, x, row.expand(2, -1), lam == 0.0, dual, wi if slim else None, w)
            tol = 1e-4 * ref.abs().max().item()
            with torch.no_grad():
                assert (sn.predict(x, lam, w) - ref).abs().max().item() <= tol, (case, lam, w)
                assert (sn.subnet(lam, w)(x) - ref).abs().max().item() <= tol, (case, lam, w)


@pytest.mark.slow
def test_import_export_select_with_onnx_equal_to_the_reference(tmp_path: Path) -> None:
    """The README's path: import-reference, export, select; every exported graph's logits are the reference's."""
    import json

    import onnxruntime as ort

    from tests.test_data import write_stl10

    data = tmp_path / "stl10"
    data.mkdir()
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        write_stl10(data, split, rng.integers(0, 256, (2, 3, 96, 96), dtype=np.uint8), np.array([3, 7]))
    sd = reference_state("wrn40_2", 16, dual=True)
    ckpt = save_reference(tmp_path, sd, latest=True, data_parallel=True)
    enc = reference_encoding("rand", 16)
    np.save(tmp_path / "rand_otho_mat.npy", enc)
    run, deploy = tmp_path / "run", tmp_path / "deploy"
    code, err = run_cli(*import_args(ckpt, run, "wrn40_2", "rand", "stl10", tmp_path / "rand_otho_mat.npy",
                                     lambdas=[0.0, 1.0]), "--data-dir", str(data))
    assert code == 0, err
    code, err = run_cli("export", str(run / "supernet.pt"), "--out", str(deploy), "--evaluate", "--verify-samples", "2",
                        "--calib-samples", "2", "--quiet")
    assert code == 0, err
    manifest = json.loads((deploy / "manifest.json").read_text())
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    for j, lam in enumerate([0.0, 1.0]):
        ref = reference_forward(sd, "wrn40_2", x, torch.tensor(enc[j : j + 1], dtype=torch.float32).expand(2, -1),
                                lam == 0.0, True)
        entry = next(v for v in manifest["variants"] if v["lambda"] == lam)
        got = ort.InferenceSession(str(deploy / entry["onnx"]), providers=["CPUExecutionProvider"]).run(
            None, {"input": x.numpy()})[0]
        assert np.abs(got - ref.numpy()).max() <= 1e-4 * ref.abs().max().item(), lam
        assert entry["metrics"]["robust_acc"] is not None
    code, err = run_cli("select", str(deploy), "--min-robust-acc", "0", "--format", "json")
    assert code == 0, err


@pytest.fixture(scope="module")
def wrn_sd() -> dict[str, torch.Tensor]:
    return reference_state("wrn40_2", 16, dual=True)


def refused(tmp_path: Path, sd: object, *extra: str, kind: str = "onehot", arch: str = "wrn40_2",
            dataset: str = "stl10", lambdas: list[float] = LAMBDAS) -> str:
    """Import `sd` (saved as best_ATA1.0.pth) and return the one error line; exit 2 and no traceback required."""
    path = tmp_path / "best_ATA1.0.pth"
    torch.save(sd, path)
    code, err = run_cli(*import_args(path, tmp_path / "run", arch, kind, dataset, lambdas=lambdas), *extra)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert not (tmp_path / "run" / "supernet.pt").exists()
    return err


def test_missing_and_unexpected_keys_are_named(tmp_path: Path, wrn_sd: dict[str, torch.Tensor]) -> None:
    sd = {k: v for k, v in wrn_sd.items() if not k.startswith("fc.")}
    sd["bundle1.0.extra.weight"] = torch.zeros(3)
    err = refused(tmp_path, sd)
    assert "missing keys (2): fc.bias, fc.weight" in err and "unexpected keys (1): bundle1.0.extra.weight" in err
    assert "check --arch" in err


def test_another_architecture_is_refused(tmp_path: Path, wrn_sd: dict[str, torch.Tensor]) -> None:
    err = refused(tmp_path, wrn_sd, arch="wrn16_8", dataset="svhn")
    assert "does not match the reference's wrn16_8" in err and "unexpected keys (360): bundle1.2.bn1" in err


def test_a_shape_that_does_not_fit_is_refused(tmp_path: Path, wrn_sd: dict[str, torch.Tensor]) -> None:
    err = refused(tmp_path, {**wrn_sd, "fc.weight": torch.zeros(100, 128)})
    assert "fc.weight is [100, 128], wrn40_2 needs [10, 128]" in err


def test_encoding_matrix_with_fewer_rows_than_lambdas_is_refused(tmp_path: Path,
                                                                 wrn_sd: dict[str, torch.Tensor]) -> None:
    np.save(tmp_path / "rand_otho_mat.npy", np.eye(16)[:2])
    err = refused(tmp_path, wrn_sd, "--encoding-matrix", str(tmp_path / "rand_otho_mat.npy"), kind="rand")
    assert "2 rows, fewer than the 3 λ choices" in err


def test_a_file_that_is_not_a_plain_tensor_checkpoint_is_refused(tmp_path: Path,
                                                                 wrn_sd: dict[str, torch.Tensor]) -> None:
    err = refused(tmp_path, {"model": wrn_sd, "args": argparse.Namespace(lr=0.1)})
    assert "not a plain tensor checkpoint" in err and "weights_only=True" in err
    (tmp_path / "garbage.pth").write_bytes(b"\x00not torch")
    code, err = run_cli(*import_args(tmp_path / "garbage.pth", tmp_path / "run", "wrn40_2", "onehot", "stl10"))
    assert code == 2 and "not a plain tensor checkpoint" in err


def test_widths_for_a_model_that_is_not_slimmable_are_refused(tmp_path: Path,
                                                             wrn_sd: dict[str, torch.Tensor]) -> None:
    err = refused(tmp_path, wrn_sd, "--widths", "0.5,1")
    assert "--widths is for slimmable (OATS) checkpoints" in err


@pytest.mark.parametrize(("extra", "kind", "message"), [
    ((), "rand", "--encoding rand needs --encoding-matrix"),
    ((), "none", "--encoding none feeds λ itself (1 number) but the checkpoint's FiLM layers take 16"),
    (("--encoding-matrix", "m.npy"), "dct", "--encoding-matrix is read only for --encoding rand"),
])
def test_encoding_options_that_cannot_be_right_are_refused(tmp_path: Path, wrn_sd: dict[str, torch.Tensor],
                                                           extra: tuple[str, ...], kind: str, message: str) -> None:
    assert message in refused(tmp_path, wrn_sd, *extra, kind=kind)


def test_other_inputs_that_cannot_be_imported_are_refused(tmp_path: Path, wrn_sd: dict[str, torch.Tensor]) -> None:
    mixed = {("module." + k if i % 2 else k): v for i, (k, v) in enumerate(wrn_sd.items())}
    assert "carry DataParallel's 'module.' prefix" in refused(tmp_path, mixed)
    no_film = {k: v for k, v in wrn_sd.items() if ".film" not in k}
    assert "not an OAT/OATS checkpoint" in refused(tmp_path, no_film)
    assert "pools for 96×96 inputs" in refused(tmp_path, wrn_sd, dataset="cifar10")
    assert "distinct values in [0, 1]" in refused(tmp_path, wrn_sd, lambdas=[0.0, 0.2, 0.2])


def test_slimmable_width_count_must_match_the_switchable_bns(tmp_path: Path) -> None:
    """SlimmableResNet34OAT's stem (width_mult_list 0.5, 0.75, 1) is enough: widths are checked before the rest."""
    gen = torch.Generator().manual_seed(0)
    sd = bn_entries("bn1", [32, 48, 64], True, True, gen) | film_entries("film1", 64, 4, gen)
    assert "switchable BNs for 3 widths but --widths names 2" in refused(tmp_path, sd, "--widths", "0.5,1",
                                                                        arch="resnet34", dataset="cifar10")


def test_an_import_never_replaces_a_checkpoint_without_force(tmp_path: Path, wrn_sd: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "best_ATA1.0.pth"
    torch.save(wrn_sd, path)
    args = import_args(path, tmp_path / "run", "wrn40_2", "onehot", "stl10")
    assert run_cli(*args)[0] == 0
    before = (tmp_path / "run" / "supernet.pt").read_bytes()
    code, err = run_cli(*args)
    assert code == 2 and "already holds a checkpoint; pass --force to replace it" in err and "--resume" not in err, err
    assert (tmp_path / "run" / "supernet.pt").read_bytes() == before
    assert run_cli(*args, "--force")[0] == 0
