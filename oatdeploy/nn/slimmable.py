"""Slimmable conv and linear layers: one weight tensor, sliced to the active width's channels."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def channels_for(base: int, widths: list[float]) -> list[int]:
    """⌊C·w⌋ channels per width (at least 1): the first channels of the full weight, as the fold expects."""
    return [max(1, math.floor(base * w + 1e-9)) for w in widths]


class SlimConv2d(nn.Conv2d):
    """Conv whose in/out channels are the first `in_list[i]` / `out_list[i]` of the full weight."""

    def __init__(self, in_list: list[int], out_list: list[int], kernel_size: int, stride: int = 1,
                 padding: int = 0) -> None:
        super().__init__(max(in_list), max(out_list), kernel_size, stride=stride, padding=padding, bias=False)
        self.in_list, self.out_list = list(in_list), list(out_list)

    def sliced_weight(self, width_idx: int) -> torch.Tensor:
        """The full weight itself at full width: a sliced view makes conv backward measurably slower."""
        out, inp = self.out_list[width_idx], self.in_list[width_idx]
        if (out, inp) == tuple(self.weight.shape[:2]):
            return self.weight
        return self.weight[:out, :inp]

    def forward(self, x: torch.Tensor, width_idx: int) -> torch.Tensor:
        return F.conv2d(x, self.sliced_weight(width_idx), None, self.stride, self.padding)


class SlimLinear(nn.Linear):
    """Linear head: input features sliced to the width, outputs (classes) fixed."""

    def __init__(self, in_list: list[int], out_features: int) -> None:
        super().__init__(max(in_list), out_features)
        self.in_list = list(in_list)

    def forward(self, x: torch.Tensor, width_idx: int) -> torch.Tensor:
        return F.linear(x, self.weight[:, : self.in_list[width_idx]], self.bias)
