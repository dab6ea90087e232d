"""L∞ PGD with random start (Madry et al.), the attack OAT trains and evaluates with.

The model is put in eval mode and its parameters stop requiring grad for the attack, so BN
statistics stay put and no parameter gradients are computed; both are restored afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class PGDConfig:
    eps: float
    steps: int
    step_size: float | None = None
    random_start: bool = True

    @property
    def alpha(self) -> float:
        """The paper's step size unless given: min(1.25·eps, eps + 4/255) / steps."""
        if self.step_size is not None:
            return self.step_size
        return min(1.25 * self.eps, self.eps + 4 / 255) / max(self.steps, 1)

    def describe(self) -> dict[str, object]:
        return {"name": "pgd", "norm": "linf", **asdict(self), "step_size": self.alpha}


@contextlib.contextmanager
def frozen_eval(model: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter grads inside the block; the previous state comes back after."""
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(f)
        model.train(was_training)


def pgd_attack(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor, cfg: PGDConfig,
               generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Maximise CE(fn(x'), y) over ‖x' − x‖∞ ≤ eps, x' ∈ [0, 1]. `fn` must already be in eval mode.

    The random start is `noise` (uniform [0, 1), x's shape) when given (the trainer draws it on the host before
    the step, so that the step itself has no random draw), else drawn from `generator` (on the CPU) here.
    """
    if cfg.steps <= 0 or cfg.eps <= 0:
        return x.detach().clone()
    x = x.detach()
    lo, hi = (x - cfg.eps).clamp_(0, 1), (x + cfg.eps).clamp_(0, 1)
    if cfg.random_start:
        if noise is None:
            noise = torch.rand(x.shape, generator=generator, device="cpu" if generator else x.device)
        x_adv = x + (2 * noise.to(x.device, x.dtype) - 1) * cfg.eps
        x_adv = torch.max(torch.min(x_adv, hi), lo)
    else:
        x_adv = x.clone()
    alpha = cfg.alpha
    for _ in range(cfg.steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(fn(x_adv).float(), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        x_adv = torch.max(torch.min(x_adv.detach() + alpha * grad.sign(), hi), lo)
    return x_adv.detach()
