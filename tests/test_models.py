"""Model registry and the fold contract: every (λ, width) folded net equals the supernet's logits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import oatdeploy
from oatdeploy.config import FILM_KINDS
from oatdeploy.lambdas import build_table
from oatdeploy.models import create_model, list_models
from oatdeploy.nn import LambdaLinear, LinearFiLM
from oatdeploy.runtime.errors import OatError
from oatdeploy.supernet import Supernet
from tests.conftest import train_run

LAMBDAS = [0.0, 0.2, 1.0]
WIDTHS = [0.5, 0.75, 1.0]


def randomized_supernet(arch: str, in_channels: int, size: int, dual_bn: bool = True,
                        film: str = "mlp", lambda_head: bool = False) -> Supernet:
    """A supernet whose BN statistics and affines (and FiLM and classifier tables) are random, so folding has
    something to get wrong."""
    torch.manual_seed(0)
    model = create_model(arch, widths=WIDTHS, num_classes=10, in_channels=in_channels, enc_dim=16, film=film,
                         lambda_head=lambda_head)
    for m in model.modules():
        if isinstance(m, (LinearFiLM, LambdaLinear)):
            with torch.no_grad():
                m.weight.uniform_(-0.3, 0.3)
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    config = {"arch": arch, "lambdas": LAMBDAS, "widths": WIDTHS, "input_shape": [in_channels, size, size],
              "num_classes": 10, "dual_bn": dual_bn}
    return Supernet(model, config, build_table("rand", LAMBDAS, 16, 0))


def test_registry_lists_the_paper_models_and_rejects_unknown() -> None:
    assert {"resnet20", "resnet34", "wrn16_8", "wrn40_2"} <= set(list_models())
    with pytest.raises(OatError, match="resnet20"):
        create_model("resnet1000")
    with pytest.raises(OatError, match="linear"):
        create_model("resnet20", film="table")


@pytest.mark.parametrize(("arch", "channels", "size", "film", "head"),
                         [("resnet20", 1, 28, "mlp", False), ("resnet34", 3, 16, "mlp", False),
                          ("wrn16_8", 3, 16, "mlp", False), ("wrn40_2", 1, 12, "mlp", False),
                          *[("resnet20", 1, 28, k, False) for k in FILM_KINDS if k != "mlp"],
                          ("resnet20", 1, 28, "linear", True), ("resnet34", 3, 16, "linear", True),
                          ("wrn40_2", 1, 12, "linear", True)])
def test_folded_subnet_matches_supernet_for_every_lambda_and_width(arch: str, channels: int, size: int,
                                                                   film: str, head: bool) -> None:
    sn = randomized_supernet(arch, channels, size, film=film, lambda_head=head)
    x = torch.rand(3, channels, size, size)
    for w in WIDTHS:
        shared = sn.shared_subnet(w)
        for li, lam in enumerate(LAMBDAS):
            ref = sn.predict(x, lam, w)
            with torch.no_grad():
                folded = sn.subnet(lam, w)(x)
                table = shared(x, torch.tensor([li]))
            assert ref.shape == (3, 10)
            assert (folded - ref).abs().max() < 1e-4, (arch, lam, w)
            assert (table - ref).abs().max() < 1e-4, (arch, lam, w)


def test_folded_subnet_is_plain() -> None:
    sn = randomized_supernet("resnet20", 1, 28)
    kinds = {type(m).__name__ for m in sn.subnet(0.2, 0.5).modules()}
    assert not any("BatchNorm" in k or "FiLM" in k or "Slim" in k for k in kinds)
    n_params = sum(p.numel() for p in sn.subnet(0.2, 0.5).parameters())
    assert n_params < sum(p.numel() for p in sn.model.parameters()) / 4


def test_single_bn_ablation_folds_with_the_clean_bn() -> None:
    sn = randomized_supernet("resnet20", 1, 28, dual_bn=False)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert (sn.subnet(1.0, 1.0)(x) - sn.predict(x, 1.0, 1.0)).abs().max() < 1e-4
    dual = randomized_supernet("resnet20", 1, 28, dual_bn=True)
    assert (dual.predict(x, 1.0, 1.0) - sn.predict(x, 1.0, 1.0)).abs().max() > 1e-3


def test_untrained_lambda_or_width_names_the_choices() -> None:
    sn = randomized_supernet("resnet20", 1, 28)
    with pytest.raises(ValueError, match=r"λ=0\.3 was not trained; choose one of 0, 0\.2, 1$"):
        sn.subnet(0.3, 1.0)
    with pytest.raises(ValueError, match=r"width=0\.6 was not trained; choose one of 0\.5, 0\.75, 1$"):
        sn.predict(torch.rand(1, 1, 28, 28), 0.2, 0.6)


def test_trained_resnet34_checkpoint_folds_exactly(tmp_path: Path) -> None:
    """Real SGD steps on the embedded data move BN statistics, FiLM and weights; folding must follow.

    After two steps the BN running statistics are far from the activations, so eval-mode logits reach
    1e7–1e10: the error is measured relative to their scale (float32 rounding is ~1e-7 of it).
    """
    ckpt = train_run(tmp_path, arch="resnet34", batch_size=8, pgd_steps=1, max_steps=2, train_limit=64)
    sn = oatdeploy.load_checkpoint(ckpt)
    x = torch.rand(4, *sn.input_shape)
    for lam in sn.lambdas:
        for w in sn.widths:
            with torch.no_grad():
                reference = sn.predict(x, lam, w)
                diff = (sn.subnet(lam, w)(x) - reference).abs().max().item()
            assert diff <= 1e-5 * max(1.0, reference.abs().max().item()), (lam, w, diff)
