"""PGD: stays in the ε-ball and in [0, 1], raises the loss, leaves the model as it found it."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from oatdeploy.attacks import PGDConfig, frozen_eval, pgd_attack
from oatdeploy.models import create_model


def test_pgd_alpha_follows_the_paper() -> None:
    cfg = PGDConfig(eps=8 / 255, steps=7)
    assert abs(cfg.alpha - min(1.25 * 8 / 255, 8 / 255 + 4 / 255) / 7) < 1e-12


def test_pgd_stays_in_the_ball_and_image_range_and_hurts() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    x = torch.rand(32, 1, 8, 8)
    y = model(x).argmax(1)
    cfg = PGDConfig(eps=0.1, steps=10)
    x_adv = pgd_attack(model, x, y, cfg, generator=torch.Generator().manual_seed(0))
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert not x_adv.requires_grad
    with torch.no_grad():
        assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y) + 0.1


def test_frozen_eval_restores_mode_and_grad_flags() -> None:
    model = create_model("resnet20", widths=[1.0], num_classes=10, in_channels=1).train()
    with frozen_eval(model):
        assert not model.training
        assert not any(p.requires_grad for p in model.parameters())
    assert model.training and all(p.requires_grad for p in model.parameters())
