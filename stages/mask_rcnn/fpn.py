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

The RPN on the pyramid (sec. 4.1, ``PyramidRPN``): stage 3's RPN with one change, the same head
slides over every level, and each level has anchors of one size (with the 3 ratios).

    FPN              {"C2".."C5"} -> {"P2".."P6"}
    assign_levels    FPN Eq. 1: the level k of each RoI
    PyramidRPN       stage 3's RegionProposalNetwork over P2..P6
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from stages.faster_rcnn.anchors import anchor_shapes, grid_anchors
from stages.faster_rcnn.rpn import RegionProposalNetwork, flatten_rpn_outputs


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


class PyramidRPN(RegionProposalNetwork):
    """Stage 3's RPN on every pyramid level (FPN sec. 4.1): one head shared by all levels, and
    anchors of one size per level (``level_sizes``, finest first) with the 3 ratios.

    ``strides``: the levels' strides in image pixels. The anchors of all levels are scored
    together, so the proposal layer's top-N and NMS run over all levels at once (as Detectron's
    RPN; torchvision picks the top-N per level first). Labels, sampling and the loss: unchanged.
    """

    def __init__(self, in_channels: int, strides: tuple, cfg, level_sizes: tuple):
        if len(level_sizes) != len(strides):
            raise ValueError(f"{len(strides)} levels but anchor sizes for {len(level_sizes)}")
        # stage 3's RPN with the finest level's anchors: A = 3 shapes per location, one head
        super().__init__(in_channels, strides[0], cfg, sizes=(level_sizes[0],))
        self.strides = tuple(strides)
        self.level_anchors = [anchor_shapes((size,), cfg.anchor_ratios) for size in level_sizes]

    def score(self, features: list[torch.Tensor]):
        """Stage 3's ``score`` on each level, concatenated level after level: ``(pred_objectness
        (N, M), pred_deltas (N, M, 4), anchors (M, 4), locations)``, M over all levels."""
        outputs = [flatten_rpn_outputs(*self.head(f)) for f in features]  # (N, M_l), (N, M_l, 4)
        anchors = torch.cat([grid_anchors(tuple(f.shape[-2:]), stride, base)
                             for f, stride, base in zip(features, self.strides, self.level_anchors)])
        locations = sum(f.shape[-2] * f.shape[-1] for f in features)
        return (torch.cat([o for o, _ in outputs], dim=1), torch.cat([d for _, d in outputs], dim=1),
                anchors.to(features[0].device), locations)
