"""FiLM: the λ encoding becomes a per-channel scale and shift (Perez et al.; OAT, Wang et al. 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FiLM(nn.Module):
    """Two-layer MLP on the λ encoding → (scale m, shift s), both leaky-ReLU activated as in the paper.

    The output bias of the scale half starts at 1, so FiLM starts near the identity and a short run
    trains like a plain ResNet; the paper's random init is otherwise kept.
    """

    def __init__(self, channels: int, enc_dim: int, hidden_mult: int = 1) -> None:
        super().__init__()
        self.channels = channels
        hidden = 2 * channels * hidden_mult
        self.MLP = nn.Sequential(nn.Linear(enc_dim, hidden), nn.LeakyReLU(), nn.Linear(hidden, 2 * channels))
        with torch.no_grad():
            self.MLP[2].bias[:channels].fill_(1.0)
            self.MLP[2].bias[channels:].zero_()

    def coefficients(self, enc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """enc [B, d] -> (m, s), each [B, C]."""
        m, s = self.MLP(enc).split(self.channels, dim=-1)
        return F.leaky_relu(m), F.leaky_relu(s)

    def forward(self, x: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        m, s = self.coefficients(enc)
        return torch.addcmul(s[:, :, None, None], x, m[:, :, None, None])


class SwitchableFiLM(nn.Module):
    """One FiLM per width: like switchable BN, the modulation is private to each width."""

    def __init__(self, channels_list: list[int], enc_dim: int) -> None:
        super().__init__()
        self.films = nn.ModuleList(FiLM(c, enc_dim) for c in channels_list)

    def forward(self, x: torch.Tensor, enc: torch.Tensor, width_idx: int) -> torch.Tensor:
        return self.films[width_idx](x, enc)


def film_affine(sfilm: SwitchableFiLM, width_idx: int, encs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-λ (m, s) tables [L, C] for one width, from the λ encodings [L, d]."""
    return sfilm.films[width_idx].coefficients(encs)
