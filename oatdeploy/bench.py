"""Training-step timing on random data: the figure `oatdeploy bench train-step` reports."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch

from oatdeploy.checkpoint import model_from_config
from oatdeploy.config import DEFAULT_LAMBDAS, TrainConfig
from oatdeploy.distributed import DistInfo
from oatdeploy.lambdas import build_table
from oatdeploy.trainer import OATStep, make_optimizer, prepare_model, resolve_device


def train_step(arch: str = "resnet34", batch_size: int = 16, pgd_steps: int = 3,
               input_shape: tuple[int, int, int] = (3, 32, 32), widths: tuple[float, ...] = (1.0,),
               device: str = "auto", num_classes: int = 10,
               **levers: Any) -> tuple[Callable[[], None], torch.device]:
    """One OAT step (forward, PGD on the λ > 0 samples, backward, SGD update) as `oatdeploy train` runs it here;
    `levers` set TrainConfig fields: the speed fields (amp, amp_cpu, compile, channels_last) to measure each
    one, or the recipe's (clean_share, lambda_head) to match another code's work."""
    cfg = TrainConfig(arch=arch, batch_size=batch_size, pgd_steps=pgd_steps, widths=list(widths),
                      lambdas=list(DEFAULT_LAMBDAS), eps=8 / 255, device=device, num_classes=num_classes,
                      input_shape=list(input_shape), out="", **levers)
    dev = resolve_device(cfg, DistInfo())
    torch.manual_seed(0)
    model = model_from_config(asdict(cfg))
    prepare_model(model, cfg, dev)
    step = OATStep(model, cfg, build_table(cfg.enc_kind, cfg.lambdas, cfg.enc_dim, cfg.seed), dev, seed=0)
    opt, sched = make_optimizer(model, cfg, total_steps=1000)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch_size, *input_shape, generator=gen)
    y = torch.randint(num_classes, (batch_size,), generator=gen)

    def one_step() -> None:
        opt.zero_grad(set_to_none=True)
        step(x, y)
        opt.step()
        sched.step()

    return one_step, dev


def train_step_seconds(arch: str = "resnet34", batch_size: int = 16, pgd_steps: int = 3, steps: int = 10,
                       input_shape: tuple[int, int, int] = (3, 32, 32), widths: tuple[float, ...] = (1.0,),
                       warmup: int = 2, device: str = "auto", num_classes: int = 10) -> list[float]:
    """Wall seconds of each timed OAT step."""
    step, dev = train_step(arch, batch_size, pgd_steps, input_shape, widths, device, num_classes)
    return time_steps(step, steps, warmup, dev)


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
