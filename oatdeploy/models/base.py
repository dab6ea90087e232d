"""What every OATS supernet shares: the conditioning passed down the network and the fold contract."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from oatdeploy.models.plain import AffineSpec, ConvSpec, LinearSpec, PlainNet, build_layer
from oatdeploy.nn import (
    FiLMSpec,
    SlimConv2d,
    SlimLinear,
    SwitchableDualBN2d,
    SwitchableFiLM,
    SwitchableLambdaLinear,
    film_affine,
    switchable_affine,
)


@dataclass(frozen=True)
class Cond:
    """Per-forward conditioning: λ encodings [N or 1, d], how many leading samples are λ = 0, width index."""

    enc: torch.Tensor
    n_clean: int
    width: int


@dataclass(frozen=True)
class FoldCtx:
    """Folding target: one width, the λs to tabulate (encodings [L, d]) and which of them are λ = 0."""

    width: int
    encs: torch.Tensor
    clean: list[bool]

    @property
    def num_lambdas(self) -> int:
        return len(self.clean)


def conv_spec(conv: SlimConv2d, bn: SwitchableDualBN2d, film: SwitchableFiLM | None, ctx: FoldCtx) -> ConvSpec:
    """conv → BN_k → FiLM(λ) as a conv with a per-λ affine: a = m·g, c = m·b + s (docs/architecture.md)."""
    g, b = switchable_affine(bn, ctx.width, ctx.clean)
    if film is None:
        a, c = g, b
    else:
        m, s = film_affine(film, ctx.width, ctx.encs)
        a, c = m * g, m * b + s
    return ConvSpec(conv.sliced_weight(ctx.width), a, c, conv.stride[0], conv.padding[0])


def bare_conv_spec(conv: SlimConv2d, ctx: FoldCtx) -> ConvSpec:
    """A conv with nothing after it (pre-activation nets): identity affine."""
    weight = conv.sliced_weight(ctx.width)
    ones = torch.ones(ctx.num_lambdas, weight.shape[0], dtype=weight.dtype)
    return ConvSpec(weight, ones, torch.zeros_like(ones), conv.stride[0], conv.padding[0])


def affine_spec(bn: SwitchableDualBN2d, film: SwitchableFiLM | None, ctx: FoldCtx) -> AffineSpec:
    """BN_k (→ FiLM(λ)) with no conv in front: kept as a per-channel affine."""
    g, b = switchable_affine(bn, ctx.width, ctx.clean)
    if film is None:
        return AffineSpec(g, b)
    m, s = film_affine(film, ctx.width, ctx.encs)
    return AffineSpec(m * g, m * b + s)


def linear_spec(linear: SlimLinear, lam_linear: SwitchableLambdaLinear | None, ctx: FoldCtx) -> LinearSpec:
    """The classifier for `ctx.width`, one row per λ: the shared layer plus the λ's correction, if any."""
    width = linear.in_list[ctx.width]
    weight = linear.weight[:, :width].expand(ctx.num_lambdas, -1, -1)
    bias = linear.bias.expand(ctx.num_lambdas, -1)
    if lam_linear is not None:
        dw, db = lam_linear.heads[ctx.width].tables(ctx.encs)
        weight, bias = weight + dw, bias + db
    return LinearSpec(weight, bias)


class OATModel(nn.Module):
    """A FiLM-conditioned, dual-BN, slimmable supernet.

    `forward(x, enc, n_clean, width_idx)`: enc is [N, d] (or [1, d] for one λ), the first `n_clean`
    samples use the clean BN; the classifier on the pooled features may have a per-λ correction too.
    `fold(ctx, row)` returns the plain network for `ctx.width`: folded for λ row `row`, or shared (λ
    tables, `lam_index` input) when `row` is None. Call `fold` in eval mode.
    """

    widths: list[float]
    num_classes: int
    in_channels: int
    enc_dim: int
    linear: SlimLinear
    linear_lam: SwitchableLambdaLinear | None

    def add_classifier(self, in_list: list[int], film: FiLMSpec) -> None:
        """The linear classifier on the pooled features, with its per-λ correction when `film.head`."""
        self.linear = SlimLinear(in_list, self.num_classes)
        self.linear_lam = SwitchableLambdaLinear(in_list, self.num_classes, film.enc_dim) if film.head else None

    def classify(self, feat: torch.Tensor, enc: torch.Tensor, width_idx: int) -> torch.Tensor:
        logits = self.linear(feat, width_idx)
        return logits if self.linear_lam is None else logits + self.linear_lam(feat, enc, width_idx)

    def fold_classifier(self, ctx: FoldCtx, row: int | None) -> nn.Module:
        return build_layer(linear_spec(self.linear, self.linear_lam, ctx), row)

    def forward(self, x: torch.Tensor, enc: torch.Tensor, n_clean: int, width_idx: int) -> torch.Tensor:
        raise NotImplementedError

    def fold(self, ctx: FoldCtx, row: int | None) -> PlainNet:
        raise NotImplementedError
