"""AutoAttack (standard, via pyautoattack): settings, RA vs PGD-20, gradient masking, eval → export → select.

Kept small: an MLP trained for a second on the embedded images, a few test images, and where Square would
run its 5,000 queries on robust points the test lowers `square_queries` explicitly (the CLI always runs the
standard version). The CLI test uses a one-step checkpoint, which APGD-CE breaks at once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from oatdeploy.attacks import PGDConfig
from oatdeploy.autoattack import AutoAttackConfig, AutoAttackEval
from oatdeploy.data import load_dataset
from oatdeploy.evaluate import accuracy
from tests.conftest import oatdeploy_cli, train_run


def test_standard_settings_are_the_papers_and_are_recorded() -> None:
    """Croce & Hein 2020: APGD-CE and APGD-T/FAB-T with 100 iterations, 1 restart, 9 targets; Square 5,000 queries."""
    d = AutoAttackEval(AutoAttackConfig(eps=8 / 255), num_classes=10).describe()
    assert d["name"] == "autoattack" and d["version"] == "standard" and d["norm"] == "linf"
    assert d["attacks"] == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert d["apgd_ce"] == {"iterations": 100, "restarts": 1, "loss": "ce"}
    assert d["apgd_t"] == {"iterations": 100, "restarts": 1, "targets": 9, "loss": "dlr-targeted"}
    assert d["fab_t"] == {"iterations": 100, "restarts": 1, "targets": 9}
    assert d["square"] == {"queries": 5000, "restarts": 1, "p_init": 0.8}
    reduced = AutoAttackEval(AutoAttackConfig(eps=0.1, square_queries=50), num_classes=10).describe()
    assert reduced["version"] == "custom" and reduced["square"]["queries"] == 50


@pytest.fixture(scope="module")
def mlp() -> torch.nn.Module:
    """A small MLP, 300 SGD steps on the embedded Fashion-MNIST (about 80 % clean accuracy)."""
    torch.manual_seed(0)
    train = load_dataset("fmnist-mini", limit=3000)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        idx = torch.randint(len(train), (64,), generator=gen)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(train.x[idx]), train.y[idx]).backward()
        opt.step()
    return model.eval().requires_grad_(False)


def test_autoattack_ra_is_at_most_pgd20_ra_on_the_same_images(mlp: torch.nn.Module) -> None:
    test = load_dataset("fmnist-mini", split="test", limit=32)
    eps = 0.02  # small enough that PGD-20 leaves robust images for AutoAttack to work on
    clean = accuracy(mlp, test.x, test.y, None)
    pgd = accuracy(mlp, test.x, test.y, PGDConfig(eps=eps, steps=20))
    survived = AutoAttackEval(AutoAttackConfig(eps=eps, square_queries=200), num_classes=10, progress=False)(
        mlp, test.x, test.y)
    robust = float(survived.float().mean())
    assert robust <= pgd < clean and pgd >= 0.2, (robust, pgd, clean)


class Quantize(torch.nn.Module):
    """Round pixels to 16 levels: no gradient reaches the input, a classic gradient-masking 'defence'."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x * 15) / 15


def test_gradient_masking_is_caught_by_square(mlp: torch.nn.Module) -> None:
    test = load_dataset("fmnist-mini", split="test", limit=32)
    masked = torch.nn.Sequential(Quantize(), mlp).eval()
    clean = accuracy(masked, test.x, test.y, None)
    pgd = accuracy(masked, test.x, test.y, PGDConfig(eps=0.1, steps=20))

    def autoattack_ra(*attacks: str) -> float:
        cfg = AutoAttackConfig(eps=0.1, square_queries=300, attacks=attacks)
        return float(AutoAttackEval(cfg, num_classes=10, progress=False)(masked, test.x, test.y).float().mean())

    white_box = autoattack_ra("apgd-ce", "apgd-t", "fab-t")
    full = autoattack_ra("apgd-ce", "apgd-t", "fab-t", "square")
    assert clean >= 0.5 and pgd >= clean - 0.1, (clean, pgd)  # gradients are zero: PGD looks like a defence
    assert white_box >= clean - 0.25 and full <= white_box / 2, (clean, white_box, full)


def test_eval_autoattack_to_export_to_select(tmp_path: Path) -> None:
    """The CLI path: eval.json and the manifest name AutoAttack and its settings, and select reads its RA."""
    ckpt = train_run(tmp_path, lambdas=[0.0, 1.0], widths=[1.0], max_steps=1, train_limit=64)
    r = oatdeploy_cli("eval", str(ckpt), "--attack", "autoattack", "--limit", "6")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "eval-autoattack-standard-n6.json").read_text())  # named by what it holds
    assert report["attack"]["name"] == "autoattack" and report["attack"]["square"]["queries"] == 5000
    assert report["num_samples"] == 6 and report["split"] == "test" and len(report["results"]) == 2
    assert "autoattack 1/2 λ=0 w=1" in r.stderr  # a progress bar per variant
    r = oatdeploy_cli("export", str(ckpt), "--out", str(tmp_path / "deploy"), "--verify-samples", "6",
                      "--calib-samples", "6", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "autoattack-standard" in r.stdout
    manifest = json.loads((tmp_path / "deploy" / "manifest.json").read_text())
    assert manifest["threat_model"]["attack"] == "autoattack"
    assert manifest["metrics_source"]["attack"] == report["attack"]
    best = max(report["results"], key=lambda row: (row["robust_acc"], row["clean_acc"]))
    assert all(v["metrics"]["attack"] == "autoattack-standard" for v in manifest["variants"])
    r = oatdeploy_cli("select", str(tmp_path / "deploy"), "--min-robust-acc", str(best["robust_acc"]),
                      "--objective", "robust", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["robust_acc"] == best["robust_acc"]
