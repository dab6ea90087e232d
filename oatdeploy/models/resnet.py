"""CIFAR-style BasicBlock ResNets as OATS supernets (ResNet-20, the paper's ResNet-34).

Attribute names follow the paper's reference code (conv1/bn1/film1, bundleK, conv_sc/bn_sc, linear,
BN_c/BN_a, FiLM MLP) so its checkpoints can be mapped onto these models.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from oatdeploy.models.base import Cond, FoldCtx, OATModel, conv_spec
from oatdeploy.models.plain import PlainBasicBlock, PlainNet, build_layer
from oatdeploy.models.registry import register
from oatdeploy.nn import FiLMSpec, SlimConv2d, SwitchableDualBN2d, SwitchableFiLM, channels_for


class BasicBlockOAT(nn.Module):
    """conv→BN→FiLM→ReLU→conv→BN→FiLM, plus (conv→BN) shortcut when the shape changes, then ReLU."""

    def __init__(self, in_list: list[int], out_list: list[int], stride: int, film: FiLMSpec) -> None:
        super().__init__()
        self.conv1 = SlimConv2d(in_list, out_list, 3, stride, 1)
        self.bn1 = SwitchableDualBN2d(out_list)
        self.film1 = SwitchableFiLM(out_list, film)
        self.conv2 = SlimConv2d(out_list, out_list, 3, 1, 1)
        self.bn2 = SwitchableDualBN2d(out_list)
        self.film2 = SwitchableFiLM(out_list, film)
        self.mismatch = stride != 1 or in_list != out_list
        if self.mismatch:
            self.conv_sc = SlimConv2d(in_list, out_list, 1, stride, 0)
            self.bn_sc = SwitchableDualBN2d(out_list)

    def forward(self, x: torch.Tensor, cond: Cond) -> torch.Tensor:
        w, n = cond.width, cond.n_clean
        out = F.relu(self.film1(self.bn1(self.conv1(x, w), n, w), cond.enc, w))
        out = self.film2(self.bn2(self.conv2(out, w), n, w), cond.enc, w)
        shortcut = self.bn_sc(self.conv_sc(x, w), n, w) if self.mismatch else x
        return F.relu(out + shortcut)

    def fold(self, ctx: FoldCtx, row: int | None) -> PlainBasicBlock:
        sc = build_layer(conv_spec(self.conv_sc, self.bn_sc, None, ctx), row) if self.mismatch else None
        return PlainBasicBlock(
            build_layer(conv_spec(self.conv1, self.bn1, self.film1, ctx), row),
            build_layer(conv_spec(self.conv2, self.bn2, self.film2, ctx), row),
            sc,
        )


class ResNetOAT(OATModel):
    """Stem conv→BN→FiLM→ReLU, stages of BasicBlocks, global average pool, linear."""

    def __init__(self, stem: int, stages: list[int], channels: list[int], strides: list[int],
                 widths: list[float], num_classes: int, in_channels: int, film: FiLMSpec) -> None:
        super().__init__()
        self.widths, self.num_classes = list(widths), num_classes
        self.in_channels, self.enc_dim = in_channels, film.enc_dim
        stem_list = channels_for(stem, widths)
        self.conv1 = SlimConv2d([in_channels] * len(widths), stem_list, 3, 1, 1)
        self.bn1 = SwitchableDualBN2d(stem_list)
        self.film1 = SwitchableFiLM(stem_list, film)
        prev = stem_list
        self.bundles: list[nn.ModuleList] = []
        for i, (n_blocks, ch, stride) in enumerate(zip(stages, channels, strides, strict=True)):
            out = channels_for(ch, widths)
            blocks = [BasicBlockOAT(prev if j == 0 else out, out, stride if j == 0 else 1, film)
                      for j in range(n_blocks)]
            bundle = nn.ModuleList(blocks)
            self.add_module(f"bundle{i + 1}", bundle)
            self.bundles.append(bundle)
            prev = out
        self.add_classifier(prev, film)

    def forward(self, x: torch.Tensor, enc: torch.Tensor, n_clean: int, width_idx: int) -> torch.Tensor:
        cond = Cond(enc, n_clean, width_idx)
        out = F.relu(self.film1(self.bn1(self.conv1(x, width_idx), n_clean, width_idx), enc, width_idx))
        for bundle in self.bundles:
            for block in bundle:
                out = block(out, cond)
        return self.classify(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1), enc, width_idx)

    def fold(self, ctx: FoldCtx, row: int | None) -> PlainNet:
        stem = build_layer(conv_spec(self.conv1, self.bn1, self.film1, ctx), row)
        blocks = [block.fold(ctx, row) for bundle in self.bundles for block in bundle]
        return PlainNet(stem, True, blocks, None, self.fold_classifier(ctx, row))


@register("resnet20")
def resnet20(**kwargs: Any) -> ResNetOAT:
    """ResNet-20 (He et al., CIFAR): 3×3 BasicBlocks, 16/32/64 channels. Small enough for CPUs."""
    return ResNetOAT(16, [3, 3, 3], [16, 32, 64], [1, 2, 2], **kwargs)


@register("resnet34")
def resnet34(**kwargs: Any) -> ResNetOAT:
    """The paper's CIFAR ResNet-34: 3/4/6/3 BasicBlocks, 64–512 channels, 3×3 stem without max-pool."""
    return ResNetOAT(64, [3, 4, 6, 3], [64, 128, 256, 512], [1, 2, 2, 2], **kwargs)
