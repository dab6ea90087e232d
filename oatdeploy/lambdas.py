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


def sample_terms(lam_idx: torch.Tensor, n_clean: int, lambdas: Sequence[float],
                 generator: torch.Generator) -> tuple[torch.Tensor, int]:
    """The `sampled` objective's draw: each λ > 0 sample keeps one loss term, the adversarial one with
    probability λ, so its expected loss is the paper's (1 − λ)·CE(x) + λ·CE(x_adv).

    Returns the indices reordered as [λ = 0 | λ > 0 clean-term | adversarial-term] (λs are assigned to
    batch positions independently of the images, so reordering them is another assignment) and how many
    samples precede the adversarial ones.
    """
    rest = lam_idx[n_clean:]
    adv = torch.rand(len(rest), generator=generator) < torch.tensor(lambdas)[rest]
    return torch.cat([lam_idx[:n_clean], rest[~adv], rest[adv]]), n_clean + int((~adv).sum())


def check_weights(weights: Sequence[float] | None, lambdas: Sequence[float]) -> list[float] | None:
    """One positive weight per non-zero λ choice, or None for uniform sampling."""
    if weights is None:
        return None
    nonzero = [v for v in lambdas if v != 0.0]
    if len(weights) != len(nonzero) or any(not w > 0 for w in weights):
        raise OatError(f"--lambda-weights needs one positive weight per non-zero λ ({len(nonzero)} for "
                       f"{nonzero}), got {list(weights)}")
    return [float(w) for w in weights]
