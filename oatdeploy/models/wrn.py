"""Wide ResNets (Zagoruyko & Komodakis) as OATS supernets: pre-activation blocks, as the paper's code has them.

The pre-activation BN→FiLM sits on the residual stream, not after a conv, so folding keeps it as a
per-channel affine (the cost of an inference BatchNorm in a plain WRN); the mid BN→FiLM folds into
the first conv of each block. The head is BN→ReLU with no FiLM, as in the reference's WideResNetOAT.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from oatdeploy.models.base import Cond, FoldCtx, OATModel, affine_spec, bare_conv_spec, conv_spec
from oatdeploy.models.plain import PlainNet, PlainPreActBlock, build_layer
from oatdeploy.models.registry import register
from oatdeploy.nn import FiLMSpec, SlimConv2d, SwitchableDualBN2d, SwitchableFiLM, channels_for


class PreActBlockOAT(nn.Module):
    """o = ReLU(FiLM(BN(x))); out = conv2(ReLU(FiLM(BN(conv1(o))))) + (conv_sc(o) or x)."""

    def __init__(self, in_list: list[int], out_list: list[int], stride: int, film: FiLMSpec) -> None:
        super().__init__()
        self.bn1 = SwitchableDualBN2d(in_list)
        self.film1 = SwitchableFiLM(in_list, film)
        self.conv1 = SlimConv2d(in_list, out_list, 3, stride, 1)
        self.bn2 = SwitchableDualBN2d(out_list)
        self.film2 = SwitchableFiLM(out_list, film)
        self.conv2 = SlimConv2d(out_list, out_list, 3, 1, 1)
        self.mismatch = stride != 1 or in_list != out_list
        if self.mismatch:
            self.conv_sc = SlimConv2d(in_list, out_list, 1, stride, 0)

    def forward(self, x: torch.Tensor, cond: Cond) -> torch.Tensor:
        w, n = cond.width, cond.n_clean
        o = F.relu(self.film1(self.bn1(x, n, w), cond.enc, w))
        out = F.relu(self.film2(self.bn2(self.conv1(o, w), n, w), cond.enc, w))
        out = self.conv2(out, w)
        return out + (self.conv_sc(o, w) if self.mismatch else x)

    def fold(self, ctx: FoldCtx, row: int | None) -> PlainPreActBlock:
        sc = build_layer(bare_conv_spec(self.conv_sc, ctx), row) if self.mismatch else None
        return PlainPreActBlock(
            build_layer(affine_spec(self.bn1, self.film1, ctx), row),
            build_layer(conv_spec(self.conv1, self.bn2, self.film2, ctx), row),
            build_layer(bare_conv_spec(self.conv2, ctx), row),
            sc,
        )


class WideResNetOAT(OATModel):
    """WRN-depth-k: 3×3 stem, three stages of (depth−4)/6 pre-activation blocks, (dual) BN→ReLU head."""

    def __init__(self, depth: int, k: int, widths: list[float], num_classes: int, in_channels: int,
                 film: FiLMSpec) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        self.widths, self.num_classes = list(widths), num_classes
        self.in_channels, self.enc_dim = in_channels, film.enc_dim
        stem_list = channels_for(16, widths)
        self.conv1 = SlimConv2d([in_channels] * len(widths), stem_list, 3, 1, 1)
        prev = stem_list
        self.bundles: list[nn.ModuleList] = []
        for i, (ch, stride) in enumerate(zip([16 * k, 32 * k, 64 * k], [1, 2, 2], strict=True)):
            out = channels_for(ch, widths)
            bundle = nn.ModuleList(PreActBlockOAT(prev if j == 0 else out, out, stride if j == 0 else 1, film)
                                   for j in range(n))
            self.add_module(f"bundle{i + 1}", bundle)
            self.bundles.append(bundle)
            prev = out
        self.bn_final = SwitchableDualBN2d(prev)
        self.add_classifier(prev, film)

    def forward(self, x: torch.Tensor, enc: torch.Tensor, n_clean: int, width_idx: int) -> torch.Tensor:
        cond = Cond(enc, n_clean, width_idx)
        out = self.conv1(x, width_idx)
        for bundle in self.bundles:
            for block in bundle:
                out = block(out, cond)
        out = F.relu(self.bn_final(out, n_clean, width_idx))
        return self.classify(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1), enc, width_idx)

    def fold(self, ctx: FoldCtx, row: int | None) -> PlainNet:
        stem = build_layer(bare_conv_spec(self.conv1, ctx), row)
        blocks = [block.fold(ctx, row) for bundle in self.bundles for block in bundle]
        head = build_layer(affine_spec(self.bn_final, None, ctx), row)
        return PlainNet(stem, False, blocks, head, self.fold_classifier(ctx, row))


@register("wrn16_8")
def wrn16_8(**kwargs: Any) -> WideResNetOAT:
    """WRN-16-8 (the paper's SVHN model)."""
    return WideResNetOAT(16, 8, **kwargs)


@register("wrn40_2")
def wrn40_2(**kwargs: Any) -> WideResNetOAT:
    """WRN-40-2 (the paper's STL-10 model)."""
    return WideResNetOAT(40, 2, **kwargs)
