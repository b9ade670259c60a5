"""The Feature Pyramid Network (Lin et al., CVPR 2017): strong features at every scale.

A backbone's deep maps (C5, stride 32) know *what* is there but are coarse; its shallow maps (C2,
stride 4) are fine but semantically weak. FPN (sec. 3) adds a top-down pathway: starting from C5,
each level is upsampled 2x (nearest neighbour) and added to a 1x1 "lateral" projection of the
backbone map of the same size; a 3x3 conv then smooths each sum. Every level gets the same width d.

    C5 (N, c4, H/32) --1x1--> + ------------------------------ 3x3 --> P5 (N, d, H/32)
    C4 (N, c3, H/16) --1x1--> + <--2x up-- (the sum above)      3x3 --> P4 (N, d, H/16)
    C3 (N, c2, H/8)  --1x1--> + <--2x up--                      3x3 --> P3 (N, d, H/8)
    C2 (N, c1, H/4)  --1x1--> + <--2x up--                      3x3 --> P2 (N, d, H/4)
    P6 = P5 subsampled with stride 2 (for the RPN's largest anchors only)     (N, d, H/64)

Which level pools a RoI (Eq. 1): k = floor(k0 + log2(sqrt(w h) / canonical)), clamped to 2..5:
small RoIs read the fine P2, large ones the coarse, semantically strong P4/P5.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class FPN(nn.Module):
    """``fpn({"C2": ..., "C5": ...})`` -> ``{"P2": ..., "P5": ..., "P6": ...}``, all ``channels`` wide."""

    def __init__(self, in_channels: dict, channels: int = 64):
        super().__init__()
        self.names = list(in_channels)  # ["C2", "C3", "C4", "C5"]
        self.lateral = nn.ModuleDict({n: nn.Conv2d(c, channels, 1) for n, c in in_channels.items()})
        self.output = nn.ModuleDict({n: nn.Conv2d(channels, channels, 3, padding=1)
                                     for n in in_channels})
        for conv in [*self.lateral.values(), *self.output.values()]:  # "a = 1" Kaiming, as Detectron
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)
        self.out_channels = channels

    def forward(self, levels: "OrderedDict[str, torch.Tensor]") -> "OrderedDict[str, torch.Tensor]":
        top = None
        outputs = {}
        for name in reversed(self.names):  # C5, C4, C3, C2: top-down
            lateral = self.lateral[name](levels[name])
            if top is not None:  # 2x nearest-neighbour upsampling of the coarser sum
                lateral = lateral + F.interpolate(top, size=lateral.shape[-2:], mode="nearest")
            top = lateral
            outputs["P" + name[1:]] = self.output[name](top)
        pyramid = OrderedDict((k, outputs[k]) for k in sorted(outputs))  # P2, P3, P4, P5
        pyramid["P6"] = F.max_pool2d(pyramid["P5"], kernel_size=1, stride=2)  # subsampling
        return pyramid


def assign_levels(boxes: torch.Tensor, k_min: int = 2, k_max: int = 5, k0: int = 4,
                  canonical: float = 224.0) -> torch.Tensor:
    """FPN Eq. 1: the pyramid level k of each RoI [R, 4] -> int64 [R], in ``k_min..k_max``.

    k = floor(k0 + log2(sqrt(w h) / canonical)): a RoI ``canonical`` px wide goes to P_k0, one half
    as wide to the level below (twice the resolution), one twice as wide to the level above.
    """
    w = (boxes[:, 2] - boxes[:, 0]).clamp(min=1e-6)
    h = (boxes[:, 3] - boxes[:, 1]).clamp(min=1e-6)
    k = torch.floor(k0 + torch.log2(torch.sqrt(w * h) / canonical))
    return k.clamp(k_min, k_max).to(torch.int64)


def level_of_stride(stride: int) -> int:
    """P_k has stride 2^k: 4 -> 2, 8 -> 3, ..."""
    return int(round(math.log2(stride)))
