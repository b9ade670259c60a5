"""RoIAlign, the one part stage 4 swaps in stage 3's detector, and pooling from a pyramid.

Mask R-CNN sec. 3: RoI pooling rounds the RoI to the map's cells and its bins to whole cells;
"these quantizations introduce misalignments between the RoI and the extracted features", harmless
for classification, harmful for pixel-accurate masks. RoIAlign removes every rounding: it samples
the map bilinearly at 4 regular points per bin (2 x 2) and averages them (Figure 3).

Shape shorthand: C channels, R RoIs of all images, S the pooled size (7 box head, 14 mask head).

    RoIAlign          (R, C, S, S)   one map; ``--pool align`` (stage 2's RoIPool is ``--pool roi``)
    MultiLevelPooler  (R, C, S, S)   one single-level pooler per FPN level, each RoI pooled from
                                     the level of FPN Eq. 1 (``stages.mask_rcnn.fpn.assign_levels``)
    build_pooler      RoIAlign or stage 2's RoIPool, on one map or, with --fpn, on P2..P5

Without ``--fpn`` and with ``--pool roi`` the pooler is exactly stage 3's (``tests`` prove it).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from stages.fast_rcnn.pooling import RoIPool
from stages.mask_rcnn.fpn import assign_levels, level_of_stride
from stages.ops import kernels
from stages.ops.rois import rois_with_batch_index  # list of N [R_i, 4] -> [R, 5]


class RoIAlign(nn.Module):
    """RoIAlign (sec. 3) of each RoI into (C, size, size): ``sampling_ratio`` x ``sampling_ratio``
    bilinear samples per bin (the paper's four), averaged (``reduce="max"``: their maximum, which
    the paper allows and only our kernel implements)."""

    def __init__(self, channels: int, size: int = 7, spatial_scale: float = 1 / 8, sampling_ratio: int = 2,
                 reduce: str = "mean", kernel: str = "ours"):
        super().__init__()
        if reduce != "mean" and kernel != "ours":
            raise ValueError(f"RoIAlign with reduce={reduce!r} exists only in our kernel: "
                             f"use --pool-kernel ours")
        extra = {"reduce": reduce} if kernel == "ours" else {}
        self.roi_align = functools.partial(kernels(kernel).roi_align, sampling_ratio=sampling_ratio,
                                           aligned=True, **extra)  # aligned: pixel centres at +0.5
        self.size, self.spatial_scale = size, spatial_scale
        self.out_dim = channels * size * size

    def forward(self, features: torch.Tensor, rois) -> torch.Tensor:
        return self.roi_align(features, rois, self.size, self.spatial_scale)  # (R, C, size, size)


class MultiLevelPooler(nn.Module):
    """Pool every RoI from the pyramid level that FPN Eq. 1 assigns it.

    ``poolers``: one single-level pooler per level, finest first (P2..P5), each built with that
    level's ``spatial_scale``; ``strides``: the levels' strides in image pixels. The forward pass
    takes the list of maps, finest first (extra coarser maps, such as the RPN's P6, are ignored).
    """

    def __init__(self, poolers: list[nn.Module], strides: tuple, k0: int = 4, canonical: float = 224.0):
        super().__init__()
        self.poolers, self.strides = nn.ModuleList(poolers), tuple(strides)
        self.k_min, self.k_max = level_of_stride(self.strides[0]), level_of_stride(self.strides[-1])
        self.k0, self.canonical = k0, canonical
        self.size, self.out_dim = poolers[0].size, poolers[0].out_dim

    def levels(self, boxes: torch.Tensor) -> torch.Tensor:
        """Index (0 = finest map) of the level each RoI [R, 4] is pooled from: FPN Eq. 1."""
        return assign_levels(boxes, self.k_min, self.k_max, self.k0, self.canonical) - self.k_min

    def forward(self, features: list[torch.Tensor], rois: list[torch.Tensor]) -> torch.Tensor:
        boxes = rois_with_batch_index(rois)  # (R, 5): (image index, x1, y1, x2, y2)
        levels = self.levels(boxes[:, 1:])  # (R,)
        S = self.size
        out = features[0].new_zeros((len(boxes), features[0].shape[1], S, S))  # (R, C, S, S)
        for level, (feature, pooler) in enumerate(zip(features, self.poolers)):
            idx = torch.nonzero(levels == level).flatten()
            if len(idx):
                out[idx] = pooler(feature, boxes[idx])
        return out


def build_pooler(cfg, channels: int, strides: tuple, size: int) -> nn.Module:
    """``--pool align`` (RoIAlign) or ``--pool roi`` (stage 2's RoIPool) to ``size`` x ``size``:
    on the one map when ``strides`` has one entry, else a ``MultiLevelPooler`` over the levels."""
    def one_level(stride: float) -> nn.Module:
        if cfg.pool == "roi":
            return RoIPool(channels, size, 1.0 / stride, cfg.pool_kernel)
        return RoIAlign(channels, size, 1.0 / stride, cfg.align_sampling_ratio, cfg.align_reduce,
                        cfg.pool_kernel)  # "align" (MaskRCNNConfig.SUPPORTED)

    poolers = [one_level(s) for s in strides]
    if len(poolers) == 1:
        return poolers[0]
    return MultiLevelPooler(poolers, strides, cfg.fpn_k0, cfg.fpn_canonical_size)
