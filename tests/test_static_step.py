"""The static-shape training step: the weighted objective computes what the step before it computed (same seed,
same losses and parameters), and the sampled objective attacks one of two fixed counts per batch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from oatdeploy.attacks import PGDConfig, frozen_eval, pgd_attack
from oatdeploy.config import TrainConfig
from oatdeploy.data import load_dataset
from oatdeploy.lambdas import adversarial_share, build_table, clean_count, sample_indices, sample_terms
from oatdeploy.models import OATModel, create_model
from oatdeploy.resume import RankStreams
from oatdeploy.trainer import OATStep, make_optimizer, step_widths
from tests.conftest import TINY


def model_and_config(**overrides: object) -> tuple[OATModel, TrainConfig]:
    cfg = TrainConfig(**{**TINY, "lr": 0.05, "eps": 0.1, "num_classes": 10, "input_shape": [1, 28, 28], "out": "",
                         **overrides})
    torch.manual_seed(0)
    return create_model("resnet20", widths=cfg.widths, num_classes=10, in_channels=1).train(), cfg


def step_before_static_shapes(model: OATModel, cfg: TrainConfig, enc_table: torch.Tensor, streams: RankStreams,
                              width_gen: torch.Generator, x: torch.Tensor, y: torch.Tensor) -> float:
    """The weighted OAT step as oatdeploy ran it before this change, written out plainly: λs drawn per sample
    (λ = 0 first), PGD (drawing its start inside the attack) on the λ > 0 samples per width, the weighted loss,
    backward, and the loss read back with .item() after each width."""
    lam_idx, n_clean = sample_indices(x.shape[0], cfg.lambdas, streams.lam, cfg.clean_share, cfg.lambda_weights)
    lam, enc = torch.tensor(cfg.lambdas)[lam_idx], enc_table[lam_idx]
    pgd = PGDConfig(eps=float(cfg.eps), steps=cfg.pgd_steps, step_size=cfg.step_size)
    total = 0.0
    for w in step_widths(len(cfg.widths), cfg.width_rule, width_gen):
        with frozen_eval(model):
            x_adv = pgd_attack(lambda z, w=w: model(z, enc[n_clean:], 0, w), x[n_clean:], y[n_clean:], pgd,
                               generator=streams.attack)
        clean = F.cross_entropy(model(x, enc, n_clean, w), y, reduction="none")
        adv = F.cross_entropy(model(x_adv, enc[n_clean:], 0, w), y[n_clean:], reduction="none")
        loss = ((1 - lam) * clean + F.pad(lam[n_clean:] * adv, (n_clean, 0))).mean()
        loss.backward()
        total += loss.item()
    return total


@pytest.mark.parametrize("width_rule", ["all", "sandwich"])
def test_the_static_weighted_step_gives_the_losses_and_parameters_of_the_step_before_it(width_rule: str) -> None:
    widths = [0.5, 0.75, 1.0] if width_rule == "sandwich" else [0.5, 1.0]
    model, cfg = model_and_config(width_rule=width_rule, widths=widths)
    old_model, _ = model_and_config(width_rule=width_rule, widths=widths)
    table = build_table("rand", cfg.lambdas)
    step = OATStep(model, cfg, table, torch.device("cpu"), seed=0)
    streams, width_gen = RankStreams.seeded(0, 0), torch.Generator().manual_seed(cfg.seed + 2)
    opt, _ = make_optimizer(model, cfg, total_steps=10)
    old_opt, _ = make_optimizer(old_model, cfg, total_steps=10)
    data = load_dataset("fmnist-mini", limit=96)
    for b in range(3):
        x, y = data.x[32 * b : 32 * (b + 1)], data.y[32 * b : 32 * (b + 1)]
        opt.zero_grad(set_to_none=True)
        stats = step(x, y)
        opt.step()
        old_opt.zero_grad(set_to_none=True)
        old_loss = step_before_static_shapes(old_model, cfg, table, streams, width_gen, x, y)
        old_opt.step()
        # Device tensors, read only when the caller logs: the step itself never waits for the device.
        assert all(isinstance(v, torch.Tensor) for v in stats.values()), stats
        assert math.isclose(float(stats["loss"]), old_loss, rel_tol=1e-5), (b, float(stats["loss"]), old_loss)
    for (name, new), old in zip(model.state_dict().items(), old_model.state_dict().values(), strict=True):
        assert torch.allclose(new.float(), old.float(), atol=1e-5), name


@pytest.mark.parametrize(("lambdas", "weights", "clean_share", "batch"), [
    ([0.0, 0.1, 0.2, 0.3, 0.4, 1.0], None, 0.5, 128),  # q·m = 0.4·64 = 25.6: 25 or 26
    ([0.0, 0.4, 1.0], None, None, 32),  # m = 21, q = 0.7: 14.7
    ([0.0, 0.1, 1.0], [3.0, 1.0], 0.25, 64),  # q = (0.3 + 1) / 4 = 0.325, m = 48: 15.6
    ([0.0, 1.0], None, 0.5, 32),  # λ = 1 alone: every λ > 0 sample attacked, 16 exactly
])
def test_the_sampled_step_attacks_one_of_two_fixed_counts(lambdas: list[float], weights: list[float] | None,
                                                          clean_share: float | None, batch: int) -> None:
    gen = torch.Generator().manual_seed(0)
    n_clean = clean_count(batch, lambdas, clean_share)
    qm = adversarial_share(lambdas, weights) * (batch - n_clean)
    counts, attacked, drawn = [], torch.zeros(len(lambdas)), torch.zeros(len(lambdas))
    for _ in range(300):
        idx, n0, n_first = sample_terms(batch, lambdas, gen, clean_share, weights)
        assert n0 == n_clean and idx.shape == (batch,) and bool((idx[:n_clean] == 0).all())
        assert not bool((idx[n_clean:] == 0).any())
        counts.append(batch - n_first)
        attacked += torch.bincount(idx[n_first:], minlength=len(lambdas))
        drawn += torch.bincount(idx, minlength=len(lambdas))
    assert set(counts) <= {math.floor(qm + 1e-9), math.ceil(qm - 1e-9)}, (set(counts), qm)
    assert abs(sum(counts) / len(counts) - qm) < 0.1, (sum(counts) / len(counts), qm)
    share = attacked / drawn.clamp(min=1)
    values = torch.tensor(lambdas)
    assert share[-1] == 1 and share[0] == 0  # λ = 1 always keeps CE(x_adv), λ = 0 never
    # Each λ > 0 sample keeps CE(x_adv) with probability λ, as in the paper's expected loss.
    assert (share[1:] - values[1:]).abs().max() < 0.03, share


def test_the_sampled_step_attacks_the_drawn_count_and_learns() -> None:
    model, cfg = model_and_config(objective="sampled", widths=[1.0])
    step = OATStep(model, cfg, build_table("rand", cfg.lambdas), torch.device("cpu"), seed=0)
    sizes: list[int] = []
    attack = step.attack
    step.attack = lambda x, *rest: (sizes.append(len(x)), attack(x, *rest))[1]  # type: ignore[method-assign]
    data = load_dataset("fmnist-mini", limit=32)
    opt, _ = make_optimizer(model, cfg, total_steps=100)
    losses = []
    for _ in range(10):
        opt.zero_grad(set_to_none=True)
        losses.append(float(step(data.x, data.y)["loss"]))
        opt.step()
    qm = adversarial_share(cfg.lambdas) * (32 - clean_count(32, cfg.lambdas, cfg.clean_share))  # 0.7 · 16 = 11.2
    assert set(sizes) <= {11, 12} and qm == pytest.approx(11.2), sizes
    assert sum(losses[-3:]) < sum(losses[:3]), losses


def test_cuda_graphs_on_a_cpu_run_the_same_step_without_capture() -> None:
    model, cfg = model_and_config(cuda_graphs=True)
    with pytest.warns(UserWarning, match="--cuda-graphs captures CUDA work; on this CPU the step runs as it is"):
        step = OATStep(model, cfg, build_table("rand", cfg.lambdas), torch.device("cpu"), seed=0)
    assert step.graphs is None
