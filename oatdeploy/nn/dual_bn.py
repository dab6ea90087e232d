"""Dual batch norm: clean statistics for λ = 0 samples, adversarial statistics for λ > 0.

Batches are ordered with the λ = 0 samples first, so routing is two contiguous slices (no
per-sample boolean indexing, which is slow and breaks graph capture).
"""

from __future__ import annotations

import torch
from torch import nn


class DualBN2d(nn.Module):
    """`x[:n_clean]` goes through `BN_c`, `x[n_clean:]` through `BN_a`."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.BN_c = nn.BatchNorm2d(num_features)
        self.BN_a = nn.BatchNorm2d(num_features)

    def pick(self, clean: bool) -> nn.BatchNorm2d:
        return self.BN_c if clean else self.BN_a

    def forward(self, x: torch.Tensor, n_clean: int) -> torch.Tensor:
        if n_clean <= 0:
            return self.BN_a(x)
        if n_clean >= x.shape[0]:
            return self.BN_c(x)
        return torch.cat([self.BN_c(x[:n_clean]), self.BN_a(x[n_clean:])], dim=0)


class SwitchableDualBN2d(nn.Module):
    """A private DualBN2d per width (slimmable networks need private BN statistics per width)."""

    def __init__(self, channels_list: list[int]) -> None:
        super().__init__()
        self.bns = nn.ModuleList(DualBN2d(c) for c in channels_list)

    def forward(self, x: torch.Tensor, n_clean: int, width_idx: int) -> torch.Tensor:
        return self.bns[width_idx](x, n_clean)


def bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Inference BN as y·g + b per channel: g = γ/√(σ²+ε), b = β − γ·μ/√(σ²+ε)."""
    g = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return g, bn.bias - g * bn.running_mean


def switchable_affine(sbn: SwitchableDualBN2d, width_idx: int, clean: list[bool]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-λ (g, b) tables [L, C] for one width: the clean BN where λ = 0, the adversarial BN elsewhere."""
    pairs = [bn_affine(sbn.bns[width_idx].pick(c)) for c in clean]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
