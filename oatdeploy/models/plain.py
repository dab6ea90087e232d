"""Plain networks that a folded (λ, width) subnetwork becomes: conv(+bias) / ReLU / add / pool / linear.

Every normalised layer of the supernet reduces, for fixed width, to a per-channel affine per λ:
`y = conv(x)·a[λ] + c[λ]`. A `ConvSpec` holds the conv weight and the [L, C] tables for the λs
asked for. Folded mode bakes one row into the weight and bias (`FoldedConv`); shared mode keeps the
table and picks the row with a `lam_index` input at run time (`TableConv`). The classifier is a
`LinearSpec`, one (weight, bias) per λ (the rows differ only when the supernet's head is conditioned
on λ). Both modes share these blocks, so there is one description of the plain network.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ConvSpec:
    """A conv followed by a per-channel affine per λ: weight [Co, Ci, k, k], a and c [L, Co]."""

    weight: torch.Tensor
    a: torch.Tensor
    c: torch.Tensor
    stride: int
    padding: int


@dataclass
class LinearSpec:
    """The classifier per λ: weight [L, K, C], bias [L, K] (every row the same unless the head is conditioned)."""

    weight: torch.Tensor
    bias: torch.Tensor


@dataclass
class AffineSpec:
    """A per-channel affine per λ with no conv before it (pre-activation BN→FiLM): a, c [L, C]."""

    a: torch.Tensor
    c: torch.Tensor


class Folded:
    """A layer with one λ's row baked into its weight and bias: it takes (and ignores) `lam_index` as the table
    layers do, so both modes share the blocks."""

    weight: torch.Tensor
    bias: torch.Tensor

    def bake(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        with torch.no_grad():
            self.weight.copy_(weight)
            self.bias.copy_(bias)

    def forward(self, x: torch.Tensor, lam_index: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x)  # type: ignore[misc]


class FoldedConv(Folded, nn.Conv2d):
    """A conv with BN and FiLM baked into weight and bias."""

    def __init__(self, spec: ConvSpec, row: int) -> None:
        co, ci, k, _ = spec.weight.shape
        super().__init__(ci, co, k, stride=spec.stride, padding=spec.padding, bias=True)
        self.bake(spec.weight * spec.a[row][:, None, None, None], spec.c[row])


class TableConv(nn.Module):
    """A conv whose output affine is row `lam_index` of a small [L, C] table inside the graph."""

    def __init__(self, spec: ConvSpec) -> None:
        super().__init__()
        self.stride, self.padding = spec.stride, spec.padding
        self.weight = nn.Parameter(spec.weight.detach().clone())
        self.register_buffer("a", spec.a.detach().clone())
        self.register_buffer("c", spec.c.detach().clone())

    def forward(self, x: torch.Tensor, lam_index: torch.Tensor | None = None) -> torch.Tensor:
        if lam_index is None:
            raise ValueError("a shared-mode subnetwork needs lam_index")
        y = F.conv2d(x, self.weight, None, self.stride, self.padding)
        a = self.a.index_select(0, lam_index).view(1, -1, 1, 1)
        c = self.c.index_select(0, lam_index).view(1, -1, 1, 1)
        return torch.addcmul(c, y, a)


class FoldedAffine(nn.Module):
    """x·a + c per channel (what an inference BatchNorm costs)."""

    def __init__(self, spec: AffineSpec, row: int) -> None:
        super().__init__()
        self.register_buffer("a", spec.a[row].detach().clone().view(1, -1, 1, 1))
        self.register_buffer("c", spec.c[row].detach().clone().view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor, lam_index: torch.Tensor | None = None) -> torch.Tensor:
        return torch.addcmul(self.c, x, self.a)


class TableAffine(nn.Module):
    """x·a[λ] + c[λ] per channel with the row picked by `lam_index`."""

    def __init__(self, spec: AffineSpec) -> None:
        super().__init__()
        self.register_buffer("a", spec.a.detach().clone())
        self.register_buffer("c", spec.c.detach().clone())

    def forward(self, x: torch.Tensor, lam_index: torch.Tensor | None = None) -> torch.Tensor:
        if lam_index is None:
            raise ValueError("a shared-mode subnetwork needs lam_index")
        a = self.a.index_select(0, lam_index).view(1, -1, 1, 1)
        c = self.c.index_select(0, lam_index).view(1, -1, 1, 1)
        return torch.addcmul(c, x, a)


class FoldedLinear(Folded, nn.Linear):
    """The classifier of one λ."""

    def __init__(self, spec: LinearSpec, row: int) -> None:
        super().__init__(spec.weight.shape[2], spec.weight.shape[1])
        self.bake(spec.weight[row], spec.bias[row])


class TableLinear(nn.Module):
    """The classifier whose weight and bias are row `lam_index` of [L, K, C] and [L, K] tables."""

    def __init__(self, spec: LinearSpec) -> None:
        super().__init__()
        self.weight = nn.Parameter(spec.weight.detach().clone())
        self.bias = nn.Parameter(spec.bias.detach().clone())

    def forward(self, x: torch.Tensor, lam_index: torch.Tensor | None = None) -> torch.Tensor:
        if lam_index is None:
            raise ValueError("a shared-mode subnetwork needs lam_index")
        k, c = self.weight.shape[1:]
        weight = self.weight.index_select(0, lam_index).view(k, c)
        return F.linear(x, weight, self.bias.index_select(0, lam_index).view(k))


def build_layer(spec: ConvSpec | AffineSpec | LinearSpec, row: int | None) -> nn.Module:
    """Folded layer for λ row `row`, or the shared (table) layer when `row` is None."""
    if isinstance(spec, ConvSpec):
        return TableConv(spec) if row is None else FoldedConv(spec, row)
    if isinstance(spec, LinearSpec):
        return TableLinear(spec) if row is None else FoldedLinear(spec, row)
    return TableAffine(spec) if row is None else FoldedAffine(spec, row)


class PlainBasicBlock(nn.Module):
    """Post-activation residual block: relu(conv2(relu(conv1(x))) + shortcut(x))."""

    def __init__(self, conv1: nn.Module, conv2: nn.Module, conv_sc: nn.Module | None) -> None:
        super().__init__()
        self.conv1, self.conv2, self.conv_sc = conv1, conv2, conv_sc

    def forward(self, x: torch.Tensor, lam_index: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x, lam_index)), lam_index)
        shortcut = x if self.conv_sc is None else self.conv_sc(x, lam_index)
        return F.relu(out + shortcut)


class PlainPreActBlock(nn.Module):
    """Pre-activation (WRN) block: o = relu(affine(x)); conv2(relu(conv1(o))) + shortcut."""

    def __init__(self, pre: nn.Module, conv1: nn.Module, conv2: nn.Module, conv_sc: nn.Module | None) -> None:
        super().__init__()
        self.pre, self.conv1, self.conv2, self.conv_sc = pre, conv1, conv2, conv_sc

    def forward(self, x: torch.Tensor, lam_index: torch.Tensor | None = None) -> torch.Tensor:
        o = F.relu(self.pre(x, lam_index))
        out = self.conv2(F.relu(self.conv1(o, lam_index)), lam_index)
        shortcut = x if self.conv_sc is None else self.conv_sc(o, lam_index)
        return out + shortcut


class PlainNet(nn.Module):
    """stem conv → blocks → (head affine + ReLU) → global average pool → linear."""

    def __init__(self, stem: nn.Module, stem_relu: bool, blocks: list[nn.Module], head: nn.Module | None,
                 linear: nn.Module) -> None:
        super().__init__()
        self.stem, self.stem_relu = stem, stem_relu
        self.blocks = nn.ModuleList(blocks)
        self.head, self.linear = head, linear

    def forward(self, x: torch.Tensor, lam_index: torch.Tensor | None = None) -> torch.Tensor:
        out = self.stem(x, lam_index)
        if self.stem_relu:
            out = F.relu(out)
        for block in self.blocks:
            out = block(out, lam_index)
        if self.head is not None:
            out = F.relu(self.head(out, lam_index))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1), lam_index)
