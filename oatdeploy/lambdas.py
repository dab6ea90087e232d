"""The λ knob: choices, element-wise sampling with a fixed share of λ = 0, and encodings.

As in the paper, each batch puts its λ = 0 samples first (dual BN routes them by count), draws the
rest uniformly from the non-zero choices, and feeds FiLM a fixed encoding vector per choice. The
encoding matrix is saved in the checkpoint, so a random one is reproduced exactly at load time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from oatdeploy.config import ENCODINGS
from oatdeploy.runtime.errors import OatError


def check_lambdas(lambdas: Sequence[float]) -> list[float]:
    lams = sorted(set(float(v) for v in lambdas))
    if any(not 0.0 <= v <= 1.0 for v in lams):
        raise OatError(f"λ values must lie in [0, 1]; got {lams}")
    return lams


def check_widths(widths: Sequence[float]) -> list[float]:
    ws = sorted(set(float(v) for v in widths))
    if any(not 0.0 < v <= 1.0 for v in ws):
        raise OatError(f"widths must lie in (0, 1]; got {ws}")
    return ws


def encoding_matrix(kind: str, num_choices: int, dim: int = 128, seed: int = 0) -> torch.Tensor:
    """[num_choices, d] rows fed to FiLM, one per λ choice (d = 1 for 'none': the raw λ)."""
    if kind == "none":
        raise ValueError("'none' encodes λ itself; use encode() with the λ values")
    if dim < num_choices:
        raise OatError(f"encoding dim {dim} must be at least the number of λ choices ({num_choices})")
    if kind == "onehot":
        mat = np.eye(dim)
    elif kind == "dct":
        n = np.arange(dim)
        mat = np.cos(math.pi / dim * (n[None, :] + 0.5) * n[:, None]) * math.sqrt(2.0 / dim)
        mat[0] /= math.sqrt(2.0)
    elif kind == "rand":
        q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
        mat = q
    else:
        raise OatError(f"unknown λ encoding {kind!r}; choose one of: {', '.join(ENCODINGS)}")
    return torch.tensor(mat[:num_choices], dtype=torch.float32)


def build_table(kind: str, lambdas: Sequence[float], dim: int = 128, seed: int = 0) -> torch.Tensor:
    """The encoding of each λ choice, [L, d]; for 'none' the λ value itself, [L, 1]."""
    if kind == "none":
        return torch.tensor([[float(v)] for v in lambdas])
    return encoding_matrix(kind, len(lambdas), dim, seed)


def clean_count(batch_size: int, lambdas: Sequence[float], clean_share: float | None = None) -> int:
    """How many λ = 0 samples a batch holds: ⌈share·N⌉, the share defaulting to 1/len(choices)."""
    if 0.0 not in lambdas:
        return 0
    if len(lambdas) == 1:
        return batch_size
    share = 1.0 / len(lambdas) if clean_share is None else clean_share
    return min(batch_size, math.ceil(share * batch_size))


def sample_indices(batch_size: int, lambdas: Sequence[float], generator: torch.Generator,
                   clean_share: float | None = None,
                   weights: Sequence[float] | None = None) -> tuple[torch.Tensor, int]:
    """Element-wise λ indices [N] into `lambdas`, λ = 0 first; returns (indices, n_clean).

    The non-zero choices are drawn uniformly (the paper), or in proportion to `weights` (one per
    non-zero choice, in order).
    """
    n_clean = clean_count(batch_size, lambdas, clean_share)
    nonzero = [i for i, v in enumerate(lambdas) if v != 0.0]
    head = torch.full((n_clean,), lambdas.index(0.0) if n_clean else 0, dtype=torch.long)
    if not nonzero:
        return head, n_clean
    n = batch_size - n_clean
    if weights is None:
        pick = torch.randint(len(nonzero), (n,), generator=generator)
    else:
        pick = torch.multinomial(torch.tensor(weights, dtype=torch.float), n, replacement=True, generator=generator)
    return torch.cat([head, torch.tensor(nonzero, dtype=torch.long)[pick]]), n_clean


def adversarial_share(lambdas: Sequence[float], weights: Sequence[float] | None = None) -> float:
    """q = E[λ] over the non-zero choices as they are drawn (uniformly, or in proportion to `weights`): the
    chance that a λ > 0 sample of the `sampled` objective keeps its adversarial term."""
    nonzero = [v for v in lambdas if v != 0.0]
    w = [1.0] * len(nonzero) if weights is None else [float(v) for v in weights]
    return sum(wi * v for wi, v in zip(w, nonzero, strict=True)) / sum(w) if nonzero else 0.0


def adversarial_count(m: int, q: float, generator: torch.Generator) -> int:
    """⌊q·m⌋ or ⌈q·m⌉, the larger with probability frac(q·m), so that its mean is q·m exactly."""
    qm = round(q * m, 9)  # 0.4·5 is 2.0000000000000004 in floats: 2, not sometimes 3
    low = math.floor(qm)
    return low + int(bool(torch.rand((), generator=generator) < qm - low)) if qm > low else low


def sample_terms(batch_size: int, lambdas: Sequence[float], generator: torch.Generator,
                 clean_share: float | None = None,
                 weights: Sequence[float] | None = None) -> tuple[torch.Tensor, int, int]:
    """The `sampled` objective's draw, in static shapes: λ indices ordered [λ = 0 | λ > 0 keeping CE(x) |
    λ > 0 keeping CE(x_adv)], and the two split points (n_clean, n_first).

    The paper's loss for a λ > 0 sample is (1 − λ)·CE(x) + λ·CE(x_adv); `sampled` keeps one term per sample,
    the adversarial one with probability λ. Drawing λ per sample and then its term independently makes the
    number k of adversarial terms among the m λ > 0 samples Binomial(m, q) (q = `adversarial_share`), so the
    attacked slice would change size every step. The same pairs (λ, term) come from drawing k first, then the
    λs of the k adversarial terms from P(λ | adv) ∝ w_λ·λ and those of the m − k clean terms from
    P(λ | clean) ∝ w_λ·(1 − λ). Given k, the expected loss is (m − k)·E_clean + k·E_adv: linear in k, so any
    k with mean q·m gives the paper's expected loss (and gradient), not only the binomial one. Here k is
    ⌊q·m⌋ or ⌈q·m⌉ (the larger with probability frac(q·m)): two static sizes, and less variance than the
    binomial. One fixed size would need the terms reweighted, which scales the loss differently every step.
    """
    n_clean = clean_count(batch_size, lambdas, clean_share)
    head = torch.full((n_clean,), lambdas.index(0.0) if n_clean else 0, dtype=torch.long)
    nonzero = [i for i, v in enumerate(lambdas) if v != 0.0]
    m = batch_size - n_clean
    if not nonzero or m == 0:
        return head, n_clean, batch_size
    w = torch.ones(len(nonzero), dtype=torch.float64) if weights is None else torch.tensor(weights, dtype=torch.float64)
    lam = torch.tensor([lambdas[i] for i in nonzero], dtype=torch.float64)
    k = adversarial_count(m, adversarial_share(lambdas, weights), generator)
    ids = torch.tensor(nonzero, dtype=torch.long)

    def draw(p: torch.Tensor, n: int) -> torch.Tensor:
        if n == 0:
            return torch.zeros(0, dtype=torch.long)
        return ids[torch.multinomial(p.float(), n, replacement=True, generator=generator)]

    return torch.cat([head, draw(w * (1 - lam), m - k), draw(w * lam, k)]), n_clean, batch_size - k


def check_weights(weights: Sequence[float] | None, lambdas: Sequence[float]) -> list[float] | None:
    """One positive weight per non-zero λ choice, or None for uniform sampling."""
    if weights is None:
        return None
    nonzero = [v for v in lambdas if v != 0.0]
    if len(weights) != len(nonzero) or any(not w > 0 for w in weights):
        raise OatError(f"--lambda-weights needs one positive weight per non-zero λ ({len(nonzero)} for "
                       f"{nonzero}), got {list(weights)}")
    return [float(w) for w in weights]
