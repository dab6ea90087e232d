"""FiLM: the λ encoding becomes a per-channel scale and shift (Perez et al.; OAT, Wang et al. 2020).

Three kinds, chosen by `TrainConfig.film` (the checkpoint records which):
- `linear` (default): m = 1 + A·e, s = B·e, no hidden layer. With the orthonormal encodings (`rand`,
  `onehot`, `dct`) each λ owns its own (m, s) — a per-λ table — and gradient steps for one λ never move
  another's; it starts at the identity. This is what makes the λ knob turn at small budgets (see
  docs/knob.md): the MLP's λ-dependent part is a product of two small random matrices whose gradient
  is proportional to the other factor, so it barely leaves zero in a few epochs.
- `mlp`: the paper's two-layer MLP with leaky-ReLU outputs, its scale bias starting at 1 (identity).
- `paper`: the same MLP with PyTorch's default initialisation, exactly as the reference code.

FiLM only rescales channels. With `FiLMSpec.head` the classifier is conditioned too (`LambdaLinear`):
each λ reads the pooled features through its own correction of the shared linear layer, so a clean
and a robust variant can weigh the same features differently (docs/knob.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from oatdeploy.config import FILM_KINDS


@dataclass(frozen=True)
class FiLMSpec:
    """What every FiLM layer of a model is: its kind and the λ encoding's dimension."""

    enc_dim: int
    kind: str = "mlp"
    head: bool = False  # a per-λ correction of the classifier (LambdaLinear) as well

    def __post_init__(self) -> None:
        if self.kind not in FILM_KINDS:
            raise ValueError(f"unknown FiLM kind {self.kind!r}; choose one of: {', '.join(FILM_KINDS)}")


class FiLM(nn.Module):
    """Two-layer MLP on the λ encoding → (scale m, shift s), both leaky-ReLU activated as in the paper.

    With `identity_init` the output bias of the scale half starts at 1, so FiLM starts at the identity;
    without it the layer is initialised as the reference code does (m and s start near 0).
    """

    def __init__(self, channels: int, enc_dim: int, hidden_mult: int = 1, identity_init: bool = True) -> None:
        super().__init__()
        self.channels = channels
        hidden = 2 * channels * hidden_mult
        self.MLP = nn.Sequential(nn.Linear(enc_dim, hidden), nn.LeakyReLU(), nn.Linear(hidden, 2 * channels))
        if identity_init:
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


class LinearFiLM(nn.Module):
    """m = 1 + A·e, s = B·e: a per-λ (scale, shift) table when the encodings are orthonormal.

    No bias and no activation: the λ-independent affine is the BN's, and a table needs neither. Weight
    decay pulls it back to the identity, not to zero.
    """

    def __init__(self, channels: int, enc_dim: int) -> None:
        super().__init__()
        self.channels = channels
        self.weight = nn.Parameter(torch.zeros(2 * channels, enc_dim))

    def coefficients(self, enc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """enc [B, d] -> (m, s), each [B, C]."""
        m, s = F.linear(enc, self.weight).split(self.channels, dim=-1)
        return 1 + m, s

    def forward(self, x: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        m, s = self.coefficients(enc)
        return torch.addcmul(s[:, :, None, None], x, m[:, :, None, None])


def make_film(channels: int, spec: FiLMSpec) -> nn.Module:
    if spec.kind == "linear":
        return LinearFiLM(channels, spec.enc_dim)
    return FiLM(channels, spec.enc_dim, identity_init=spec.kind == "mlp")


class SwitchableFiLM(nn.Module):
    """One FiLM per width: like switchable BN, the modulation is private to each width."""

    def __init__(self, channels_list: list[int], spec: FiLMSpec) -> None:
        super().__init__()
        self.films = nn.ModuleList(make_film(c, spec) for c in channels_list)

    def forward(self, x: torch.Tensor, enc: torch.Tensor, width_idx: int) -> torch.Tensor:
        return self.films[width_idx](x, enc)


def film_affine(sfilm: SwitchableFiLM, width_idx: int, encs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-λ (m, s) tables [L, C] for one width, from the λ encodings [L, d]."""
    return sfilm.films[width_idx].coefficients(encs)


class LambdaLinear(nn.Module):
    """A per-λ correction of a linear classifier: ΔW = A·e, Δb = B·e, added to the shared layer's output.

    Like LinearFiLM, a table when the encodings are orthonormal (a step for one λ moves only its row),
    starting at zero (the shared classifier); weight decay pulls it back to the shared classifier.
    """

    def __init__(self, in_features: int, out_features: int, enc_dim: int) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.zeros(out_features * (in_features + 1), enc_dim))

    def tables(self, enc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """enc [B, d] -> (ΔW [B, K, C], Δb [B, K])."""
        t = F.linear(enc, self.weight).view(-1, self.out_features, self.in_features + 1)
        return t[..., :-1], t[..., -1]

    def forward(self, feat: torch.Tensor, enc: torch.Tensor) -> torch.Tensor:
        """feat [N, C], enc [N or 1, d] -> the logit correction [N, K]."""
        dw, db = self.tables(enc)
        return torch.matmul(dw, feat.unsqueeze(-1)).squeeze(-1) + db


class SwitchableLambdaLinear(nn.Module):
    """One LambdaLinear per width (the classifier's input is sliced to the width)."""

    def __init__(self, in_list: list[int], out_features: int, enc_dim: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(LambdaLinear(c, out_features, enc_dim) for c in in_list)

    def forward(self, feat: torch.Tensor, enc: torch.Tensor, width_idx: int) -> torch.Tensor:
        return self.heads[width_idx](feat, enc)
