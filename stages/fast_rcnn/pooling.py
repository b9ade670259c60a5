"""Pooling a region of the shared feature map into a fixed size: RoI pooling and SPP.

Fast R-CNN sec. 2.1: "RoI max pooling works by dividing the h x w RoI window into an H x W grid
of sub-windows of approximate size h/H x w/W and then max-pooling the values in each sub-window
into the corresponding output grid cell." SPP-net (He et al. 2014, sec. 2.2) pools the same window
into several grids at once (4x4, 2x2, 1x1) and concatenates them: RoI pooling is its one-level case.

Shape shorthand: C channels of the map, R RoIs of all images, S the pooled size.

    pooler(features (N, C, H', W'), rois list of N [R_i, 4])  ->  (R, C, S, S) or (R, D)
      RoIPool  (R, C, S, S)          S = 7; out_dim = C S^2          --pool roi
      SPPPool  (R, C (16 + 4 + 1))   levels {4, 2, 1}; out_dim = C 21 --pool spp
      RoIAlign (R, C, S, S)          stage 4 adds it (stages.mask_rcnn.pooling) --pool align

``--pool`` names the same operation in every stage: ``roi`` is RoI max pooling, ``spp`` the
spatial pyramid, ``align`` RoIAlign; each stage offers the ones its papers use. Every pooler has
``out_dim``, the length of one pooled RoI flattened, which sizes the head's fc6. ``spatial_scale``
= 1 / the map's stride in image pixels (0.25 for our stride-4 map: a 128-px image, a 32-cell map).
"""

from __future__ import annotations

import torch
from torch import nn

from stages.ops import kernels, spp_output_dim, spp_pool


class RoIPool(nn.Module):
    """RoI max pooling (sec. 2.1) of each RoI into (C, size, size)."""

    def __init__(self, channels: int, size: int = 7, spatial_scale: float = 1 / 8, kernel: str = "ours"):
        super().__init__()
        self.size, self.spatial_scale, self.kernel = size, spatial_scale, kernel
        self.out_dim = channels * size * size
        self.roi_pool = kernels(kernel).roi_pool

    def forward(self, features: torch.Tensor, rois: list[torch.Tensor]) -> torch.Tensor:
        return self.roi_pool(features, rois, self.size, self.spatial_scale)  # (R, C, size, size)


class SPPPool(nn.Module):
    """SPP-net's spatial pyramid of each RoI: levels n x n, concatenated -> (R, C sum n^2)."""

    def __init__(self, channels: int, levels: tuple = (4, 2, 1), spatial_scale: float = 1 / 8,
                 kernel: str = "ours"):
        super().__init__()
        self.levels, self.spatial_scale = tuple(levels), spatial_scale
        self.out_dim = spp_output_dim(channels, self.levels)
        self.roi_pool = kernels(kernel).roi_pool

    def forward(self, features: torch.Tensor, rois: list[torch.Tensor]) -> torch.Tensor:
        return spp_pool(features, rois, self.levels, self.spatial_scale, pool=self.roi_pool)


def build_pooler(cfg, channels: int, stride: float) -> nn.Module:
    """``--pool roi``: RoI pooling to ``cfg.pool_size`` x ``cfg.pool_size``; ``--pool spp``: the
    ``cfg.spp_levels`` pyramid; on a map of ``channels`` channels and ``stride`` image pixels."""
    if cfg.pool == "spp":
        return SPPPool(channels, cfg.spp_levels, 1.0 / stride, cfg.pool_kernel)
    return RoIPool(channels, cfg.pool_size, 1.0 / stride, cfg.pool_kernel)  # "roi" (SUPPORTED)
