"""Training-step timing on random data: the figure `oatdeploy bench train-step` reports."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict

import torch

from oatdeploy.checkpoint import model_from_config
from oatdeploy.lambdas import DEFAULT_LAMBDAS, build_table
from oatdeploy.trainer import DistInfo, OATStep, TrainConfig, make_optimizer, resolve_device


def train_step_seconds(arch: str = "resnet34", batch_size: int = 16, pgd_steps: int = 3, steps: int = 10,
                       input_shape: tuple[int, int, int] = (3, 32, 32), widths: tuple[float, ...] = (1.0,),
                       warmup: int = 2, device: str = "auto", num_classes: int = 10) -> list[float]:
    """Wall seconds of each timed OAT step (forward, PGD on the λ > 0 samples, backward, SGD update)."""
    cfg = TrainConfig(arch=arch, batch_size=batch_size, pgd_steps=pgd_steps, widths=list(widths),
                      lambdas=list(DEFAULT_LAMBDAS), eps=8 / 255, device=device, num_classes=num_classes,
                      input_shape=list(input_shape), out="")
    dev = resolve_device(cfg, DistInfo())
    model = model_from_config(asdict(cfg)).to(dev).train()
    if dev.type == "cuda":
        model.to(memory_format=torch.channels_last)
    step = OATStep(model, cfg, build_table(cfg.enc_kind, cfg.lambdas, cfg.enc_dim, cfg.seed), dev, seed=0)
    opt, sched = make_optimizer(model, cfg, total_steps=warmup + steps)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, *input_shape, generator=gen)
    y = torch.randint(num_classes, (batch_size,), generator=gen)

    def one_step() -> None:
        opt.zero_grad(set_to_none=True)
        step(x, y)
        opt.step()
        sched.step()

    return time_steps(one_step, steps, warmup, dev)


def time_steps(step: Callable[[], None], steps: int, warmup: int, device: torch.device) -> list[float]:
    """Wall seconds of each of `steps` calls after `warmup` untimed ones, CUDA work included."""
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times
