"""A trained supernet behind the Python API: `predict(x, lam, width)` and `subnet(lam, width)`."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from oatdeploy.models import FoldCtx, OATModel
from oatdeploy.models.plain import PlainNet
from oatdeploy.runtime.backends.base import UNSCALED
from oatdeploy.runtime.errors import OatWarning
from oatdeploy.runtime.manifest import choice_index


class Supernet:
    """An eval-mode OATS supernet plus the λ encoding table it was trained with."""

    def __init__(self, model: OATModel, config: dict[str, Any], encoding: torch.Tensor) -> None:
        self.model = model.eval()
        self.config = config
        self.encoding = encoding
        self.lambdas: list[float] = [float(v) for v in config["lambdas"]]
        self.widths: list[float] = [float(v) for v in config["widths"]]
        self.input_shape: tuple[int, int, int] = tuple(config["input_shape"])  # type: ignore[assignment]
        self.num_classes: int = int(config["num_classes"])
        self.arch: str = config["arch"]
        self.dual_bn: bool = bool(config.get("dual_bn", True))

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: torch.device | str) -> Supernet:
        """Move all of its state (the weights and the λ encoding table) to `device`; returns itself."""
        self.model.to(device)
        self.encoding = self.encoding.to(device)
        return self

    def uses_clean_bn(self, lam: float) -> bool:
        """λ = 0 runs through the clean BN, every other λ through the adversarial one (unless dual BN is off)."""
        return lam == 0.0 or not self.dual_bn

    def lam_index(self, lam: float) -> int:
        return choice_index(lam, self.lambdas, "λ")

    def width_index(self, width: float) -> int:
        return choice_index(width, self.widths, "width")

    def forward_fn(self, lam: float, width: float) -> Callable[[torch.Tensor], torch.Tensor]:
        """A differentiable x -> logits for one (λ, width), in the model's current mode (for attacks)."""
        li, wi = self.lam_index(lam), self.width_index(width)
        enc = self.encoding[li : li + 1]
        clean = self.uses_clean_bn(self.lambdas[li])

        def fn(x: torch.Tensor) -> torch.Tensor:
            return self.model(x, enc.to(x.device), x.shape[0] if clean else 0, wi)

        return fn

    @torch.no_grad()
    def predict(self, x: torch.Tensor | np.ndarray, lam: float, width: float) -> torch.Tensor:
        """Logits [N, classes] (a torch tensor) of the supernet at (λ, width) for float images [N, C, H, W] in [0, 1].

        numpy arrays are taken as they are (the runtime's inputs work here too).
        """
        self.model.eval()
        return self.forward_fn(lam, width)(self.as_input(x))

    def as_input(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """`x` as a float32 tensor on the model's device, or a ValueError naming the shape or dtype it needs."""
        expected = f"[N, {', '.join(map(str, self.input_shape))}]"
        if isinstance(x, np.ndarray):
            if not np.issubdtype(x.dtype, np.floating):
                raise ValueError(f"x has dtype {x.dtype}; pass float images in [0, 1] shaped {expected} "
                                 "(uint8 pixels: x / 255)")
            x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        elif not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor or numpy array shaped {expected}, got {type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"x has dtype {x.dtype}; pass float images in [0, 1] shaped {expected} "
                             "(uint8 pixels: x.float() / 255)")
        if x.numel() and float(x.max()) > 1.01:
            warnings.warn(UNSCALED, OatWarning, stacklevel=3)
        if tuple(x.shape[1:]) != self.input_shape or x.dim() != 4:
            hint = "; add a batch axis (x[None])" if tuple(x.shape) == self.input_shape else ""
            raise ValueError(f"x has shape {list(x.shape)}; this supernet takes [N, C, H, W] = {expected}{hint}")
        return x.to(device=self.device, dtype=torch.float32)

    @torch.no_grad()
    def subnet(self, lam: float, width: float) -> nn.Module:
        """The folded plain network for (λ, width): conv(+bias)/ReLU/add/pool/linear, no BN, no FiLM."""
        li, wi = self.lam_index(lam), self.width_index(width)
        self.model.eval()
        ctx = FoldCtx(wi, self.encoding[li : li + 1], [self.uses_clean_bn(self.lambdas[li])])
        return self.model.fold(ctx, row=0).eval().requires_grad_(False)

    @torch.no_grad()
    def shared_subnet(self, width: float) -> PlainNet:
        """One plain network per width, `forward(x, lam_index)`, with a per-λ channel affine table inside."""
        wi = self.width_index(width)
        self.model.eval()
        ctx = FoldCtx(wi, self.encoding, [self.uses_clean_bn(v) for v in self.lambdas])
        return self.model.fold(ctx, row=None).eval().requires_grad_(False)

    def __repr__(self) -> str:
        return (f"Supernet(arch={self.arch!r}, lambdas={self.lambdas}, widths={self.widths}, "
                f"input_shape={self.input_shape}, num_classes={self.num_classes})")
